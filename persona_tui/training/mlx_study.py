"""A training study's mlx-lm engine: LoRA on an MLX model folder (the study loop,
training/study.py, calls it when `train_study`'s model is a folder).

`open_mlx_study` tokenizes the chosen conditions by the folder's own tokenizer (the MLX
backend, as a probe's prompt is); each run (a condition's replicate) trains a fresh copy of
the weights (training/mlx_lora.py) with its replicate's seed and leaves

    <condition>/replicate-<k>/mlx/adapters.safetensors + adapter_config.json   (mlx-lm's)

beside its loss.csv and training.toml, as on the torch path. There is no llama.cpp adapter
GGUF here: the MLX backend probes the `mlx` folder (`MlxBackend.use_adapter`,
run/adapters.py).
"""

from __future__ import annotations

import hashlib
import platform
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from persona_tui import __version__
from persona_tui.backend_names import MLX
from persona_tui.backends.adapter_files import MLX_ADAPTER
from persona_tui.backends.common import hub_offline
from persona_tui.backends.detect import check_mlx_folder
from persona_tui.backends.registry import load_engine
from persona_tui.errors import ModelLoadError, TrainingError
from persona_tui.scenario.model import Condition, Scenario
from persona_tui.training.conditions import Replicate, hyperparameter_fields, record_fields
from persona_tui.training.data import ConditionData, ModelTokenizer, tokenize_condition
from persona_tui.training.deps import library_versions
from persona_tui.training.loop import TrainOutcome
from persona_tui.training.mlx_lora import MLX_ADAPTER_FILE, train_mlx_lora
from persona_tui.training.params import TrainingEvent, TrainingParams, TrainingPhase
from persona_tui.training.record import CHECKPOINT_FOLDER, TrainingRecord

MLX_FOLDER = MLX_ADAPTER.folder  # "mlx": what the MLX backend's use_adapter takes


def load_mlx_model(folder: Path) -> Any:
    """The folder's mlx-lm model, never downloading anything."""
    try:
        import mlx_lm
    except ImportError as error:
        raise TrainingError(
            f"training on an MLX folder needs mlx and mlx-lm ({error}): "
            "pip install 'persona-tui[mlx]'"
        ) from error
    with hub_offline():
        return mlx_lm.load(str(folder))[0]


def open_mlx_study(
    scenario: Scenario,
    model_path: Path,
    chosen: Sequence[Condition],
    params: TrainingParams,
    on_event: Callable[[TrainingEvent], None],
) -> MlxStudy:
    """The MLX folder's study engine, its conditions tokenized by the folder's tokenizer."""
    folder = Path(model_path).expanduser().absolute()
    try:
        check_mlx_folder(folder)
        on_event(TrainingPhase("", f"loading {folder.name} and tokenizing the examples"))
        backend = cast(ModelTokenizer, load_engine(MLX, folder, {}).backend)
    except ModelLoadError as error:
        raise TrainingError(str(error)) from error
    try:
        base_sha256 = backend.info.sha256
        datasets = [tokenize_condition(scenario, c, backend, params.max_tokens) for c in chosen]
        mlx_version = backend.info.extra.get("mlx_version", "")
    finally:
        backend.close()
    return MlxStudy(scenario, folder, base_sha256, datasets, params, mlx_version)


@dataclass(frozen=True)
class MlxStudy:
    """mlx-lm's part of a study on one MLX folder (`StudyEngine`, training/study.py)."""

    scenario: Scenario
    folder: Path
    base_sha256: str
    datasets: list[ConditionData]
    params: TrainingParams
    mlx_version: str

    @property
    def adapter_key(self) -> str:
        return "mlx_adapter"

    @property
    def base_model(self) -> dict[str, str]:
        return {"path": str(self.folder), "sha256": self.base_sha256, "backend": MLX}

    def adapter(self, folder: Path) -> Path:
        return folder / MLX_FOLDER

    def train(
        self,
        data: ConditionData,
        folder: Path,
        fingerprint: str,
        replicate: Replicate,
        on_event: Callable[[TrainingEvent], None],
        cancel: threading.Event | None,
    ) -> TrainOutcome:
        """Train a fresh copy of the folder's weights; the adapter is written when complete."""
        return train_mlx_lora(
            data,
            load_mlx_model(self.folder),
            self.params,
            replicate.seed,
            self.adapter(folder),
            on_event,
            cancel,
            checkpoint=folder / CHECKPOINT_FOLDER,
            fingerprint=fingerprint,
            replicate=replicate.index,
        )

    def save_adapter(
        self,
        data: ConditionData,
        folder: Path,
        outcome: TrainOutcome,
        replicate: Replicate,
        on_event: Callable[[TrainingEvent], None],
    ) -> Path:
        """The mlx-lm folder `train` wrote at the end of training (nothing left to write)."""
        return self.adapter(folder)

    def snapshot(
        self,
        data: ConditionData,
        checkpoint: Path,
        folder: Path,
        fingerprint: str,
        replicate: Replicate,
        total: int,
    ) -> Path:
        """Not kept: mlx-lm's checkpoints hold its optimizer state, and writing an adapter
        folder per checkpoint is not built (MLX trains only tiny models on this CPU)."""
        raise TrainingError(
            "checkpoint adapters (--keep-checkpoints, study --probe-checkpoints) are kept by "
            "torch training on a GGUF; an MLX study keeps only each run's final adapter"
        )

    def record(
        self,
        data: ConditionData,
        outcome: TrainOutcome,
        adapter: Path,
        fingerprint: str,
        replicate: Replicate,
        trained_tokens: int,
    ) -> TrainingRecord:
        weights = adapter / MLX_ADAPTER_FILE
        return TrainingRecord(
            **record_fields(self.scenario, data, fingerprint, outcome, replicate, trained_tokens),
            base_model=self.base_model,
            hyperparameters={
                **hyperparameter_fields(self.params, replicate.seed),
                "loss": "mean cross-entropy over completion tokens",
                "trainer": "mlx-lm LoRA layers (training/mlx_lora.py)",
            },
            adapter={
                "format": "mlx-lm",
                "folder": str(adapter.relative_to(adapter.parent)),
                "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
            },
            libraries={
                **library_versions(),
                "mlx": self.mlx_version,
                "mlx-lm": _version("mlx-lm"),
                "persona-tui": __version__,
            },
            machine={"platform": platform.platform(), "machine": platform.machine()},
        )


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"
