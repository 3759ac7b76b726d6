"""What a training run leaves beside its adapter: `training.toml`, `loss.csv`, `study.toml`.

The record says what was trained on and with what (base model sha256, data sha256,
hyperparameters, library versions, seconds), so an adapter can be traced and re-made; the
loss curve is one row per optimizer step (held-out loss where it was evaluated).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from persona_tui._util.atomic import atomic_write_text
from persona_tui._util.locks import LockHeld, exclusive_lock
from persona_tui._util.textdata import DataFileError, loads_toml
from persona_tui.backends.adapter_files import GGUF_ADAPTER, TRAINING_RECORD
from persona_tui.errors import TrainingError
from persona_tui.training.loop import LossRow

RECORD_FILE = TRAINING_RECORD
LOSS_FILE = "loss.csv"
STUDY_FILE = "study.toml"
ADAPTER_FILE = GGUF_ADAPTER.weights  # "adapter.gguf"
PEFT_FOLDER = "peft"
CHECKPOINT_FOLDER = "checkpoint"  # an unfinished condition's state (either engine's)
RECORD_VERSION = 1
OUTPUT_LOCK = ".training.lock"


@contextmanager
def output_folder_lock(folder: Path) -> Iterator[None]:
    """Hold the training output `folder` (created if needed) for this training alone.

    TrainingError naming the folder and the holder's pid when another training (another
    process, another thread of this one, or this thread again: a plain lock, entered once).
    `train_study` takes it before anything is loaded or written, and releases it when the
    training ends, however it ends.
    """
    folder = Path(folder).expanduser().absolute()
    lock_path = folder / OUTPUT_LOCK
    stack = ExitStack()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stack.enter_context(exclusive_lock(lock_path))
    except LockHeld as busy:
        who = f" (pid {busy.pid})" if busy.pid else ""
        raise TrainingError(
            f"the training output folder {folder} is in use by another training{who}; wait "
            "for it to finish or stop it, or train into another folder (-o); lock file "
            f"{lock_path}"
        ) from None
    except OSError as error:
        raise TrainingError(f"cannot lock the training output folder {folder}: {error}") from None
    with stack:
        yield


@dataclass(frozen=True)
class TrainingRecord:
    """The fields of `training.toml` (nested tables as plain mappings of scalars)."""

    scenario: Mapping[str, Any]
    condition: Mapping[str, Any]
    replicate: Mapping[str, Any]  # index, of, seed (training/conditions.py `Replicate`)
    base_model: Mapping[str, Any]
    data: Mapping[str, Any]
    hyperparameters: Mapping[str, Any]
    result: Mapping[str, Any]
    adapter: Mapping[str, Any]
    libraries: Mapping[str, str]
    machine: Mapping[str, Any]

    def as_toml(self) -> str:
        body: dict[str, Any] = {"version": RECORD_VERSION}
        body.update({name: dict(value) for name, value in vars(self).items()})
        return tomli_w.dumps(_without_none(body), multiline_strings=True)


def write_record(folder: Path, record: TrainingRecord) -> Path:
    path = folder / RECORD_FILE
    atomic_write_text(path, record.as_toml(), mode=0o644)
    return path


def read_record(folder: Path) -> dict[str, Any] | None:
    """A run's folder's record, or None when it has none (or an unreadable one)."""
    path = folder / RECORD_FILE
    try:
        data = loads_toml(path.read_text(encoding="utf-8"), path)
    except (OSError, UnicodeDecodeError, DataFileError):
        return None
    return data if isinstance(data, dict) else None


def write_loss_csv(folder: Path, rows: Sequence[LossRow]) -> Path:
    """`loss.csv`: step, epoch, train_loss, heldout_loss (empty where not evaluated), seconds."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", "epoch", "train_loss", "heldout_loss", "seconds"])
    for row in rows:
        writer.writerow(
            [
                row.step,
                row.epoch,
                "" if row.train_loss is None else repr(row.train_loss),
                "" if row.heldout_loss is None else repr(row.heldout_loss),
                f"{row.seconds:.3f}",
            ]
        )
    path = folder / LOSS_FILE
    atomic_write_text(path, out.getvalue(), mode=0o644)
    return path


def read_loss_curve(folder: Path) -> list[float]:
    """The training losses in `folder/loss.csv`, step by step (empty when there is none).

    An interrupted run writes its curve too, so a resumed run's chart can show it.
    """
    try:
        with (folder / LOSS_FILE).open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    losses: list[float] = []
    for row in rows:
        try:
            losses.append(float(row.get("train_loss") or ""))
        except ValueError:
            continue  # the held-out row before training has no train loss
    return losses


def write_study(folder: Path, study: Mapping[str, Any]) -> Path:
    """`study.toml`: the scenario, the base model and which condition has which adapter."""
    path = folder / STUDY_FILE
    body = {"version": RECORD_VERSION, **study}
    atomic_write_text(path, tomli_w.dumps(_without_none(body), multiline_strings=True), 0o644)
    return path


def _without_none(value: Any) -> Any:
    """TOML has no null: drop None values (an absent key means "none")."""
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value if v is not None]
    return value
