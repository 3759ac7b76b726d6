"""Which adapter each training condition of a study will be probed with (the app's view).

`adapters.study_adapters` stops at the first problem, as the CLI must; the app shows every
training condition at once: where its adapters (one per training run) come from (a folder
the user chose, or `persona-tui train`'s default folder), its trained steps and sha256, or
why it cannot be used (the same sentence `persona-tui run --adapters` prints) or that it
is missing.

It hashes files (the model, each adapter): call it from a worker thread, not the UI's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from persona_tui._util.hashing import sha256_file
from persona_tui.backends.detect import is_mlx_model
from persona_tui.errors import PersonaError
from persona_tui.run.adapters import (
    adapter_kind,
    default_output,
    replicate_folder,
    study_adapters,
)
from persona_tui.scenario.model import Scenario
from persona_tui.session.model import AdapterRecord

MISSING = "missing: train first"


@dataclass(frozen=True)
class AdapterChoice:
    """One training condition's adapters (one per training run): `records` when usable,
    else `problem`."""

    condition: str
    path: Path  # what was chosen, or the default condition folder
    chosen: bool  # named by the user rather than the default folder
    records: tuple[AdapterRecord, ...] = ()
    problem: str = ""

    @property
    def record(self) -> AdapterRecord | None:
        """The first training run's adapter (None when not usable)."""
        return self.records[0] if self.records else None

    @property
    def missing(self) -> bool:
        """Not trained yet: the default folder has no adapter for this condition."""
        return self.problem == MISSING

    def summary(self) -> str:
        """One line for a screen: the adapter, its trained steps and short sha256, or why not."""
        if self.record is None:
            return self.problem
        steps = f"{self.record.steps} steps" if self.record.steps else "steps not recorded"
        if len(self.records) > 1:
            return f"{self.path} · {len(self.records)} training runs · {steps} each"
        return f"{self.record.path} · {steps} · sha256 {self.record.sha256[:12]}"


def default_adapter_folders(scenario: Scenario, model_path: Path) -> dict[str, Path]:
    """Each training condition's folder in `persona-tui train`'s default output folder."""
    folder = default_output(scenario.id, Path(model_path))
    return {c.id: folder / c.id for c in scenario.training_conditions}


def model_sha256(model_path: Path) -> str:
    """The base model's sha256 the adapters are checked against ("" for an MLX folder,
    whose adapters are not checked this way). Cached by path, size and mtime."""
    return "" if is_mlx_model(model_path) else sha256_file(Path(model_path))


def check_adapter(
    scenario: Scenario,
    model_path: Path,
    base_sha256: str,
    condition: str,
    chosen: Path | None = None,
) -> AdapterChoice:
    """The adapter `condition` would be probed with: `chosen` (a condition folder or the
    adapter itself), else the default folder's; checked as `persona-tui run` checks it.
    The adapter is the kind the model's engine applies (an adapter GGUF, or an mlx-lm
    folder for an MLX model folder)."""
    default = default_adapter_folders(scenario, model_path).get(condition)
    if chosen is None:
        kind = adapter_kind(None, Path(model_path))
        trained = default is not None and (
            kind.locate(default) is not None or replicate_folder(default, 1).is_dir()
        )
        if default is None or not trained:
            return AdapterChoice(condition, default or Path(condition), False, problem=MISSING)
        where, given = default, False
    else:
        where, given = Path(chosen).expanduser(), True
    try:
        records = study_adapters(
            scenario, Path(model_path), base_sha256, {condition: where}, [condition]
        )
    except PersonaError as error:
        return AdapterChoice(condition, where, given, problem=str(error))
    if not records:  # `condition` is not a training condition
        return AdapterChoice(condition, where, given, problem=f"{condition!r}: no adapter")
    return AdapterChoice(condition, where, given, records)


def adapter_choices(
    scenario: Scenario,
    model_path: Path,
    base_sha256: str,
    chosen: Mapping[str, Path] | None = None,
) -> tuple[AdapterChoice, ...]:
    """Every training condition's adapter, in scenario order (see `check_adapter`)."""
    chosen = chosen or {}
    return tuple(
        check_adapter(scenario, model_path, base_sha256, c.id, chosen.get(c.id))
        for c in scenario.training_conditions
    )
