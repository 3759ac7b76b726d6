"""Train a training study: one LoRA adapter per training condition, on the same completions.

`train_study(scenario, model_path, out_dir, params, on_event, cancel)` is the one entry
point for the CLI (`persona-tui train`, `persona-tui study`) and the app's Training screen.
It holds the output folder's lock, opens the engine the model asks for (a GGUF: torch + peft
on its float32 weights, "auto" precision resolved for this CPU, training/torch_study.py; an
MLX model folder: mlx-lm's LoRA, training/mlx_study.py), which tokenizes the chosen
conditions with the model's own tokenizer, and runs the one study loop here: each condition
in turn is skipped when its record matches the data and settings, else trained (resuming a
checkpoint when there is one), and leaves

    out_dir/<condition>/<adapter>       the engine's adapter (`adapter.gguf` + `peft/`,
                                        or the mlx-lm folder `mlx/`)
    out_dir/<condition>/loss.csv        the loss curve
    out_dir/<condition>/training.toml   the training record
    out_dir/<condition>/checkpoint/     only while unfinished
    out_dir/study.toml                  the scenario, base model and adapters

Setting `cancel` stops after the current step with a checkpoint saved (status
"interrupted"); the conditions after it are left for the next run.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from persona_tui.backends.detect import is_mlx_model
from persona_tui.errors import TrainingError
from persona_tui.scenario.model import Condition, Scenario
from persona_tui.training.conditions import (
    StudyResult,
    already_trained,
    chosen_conditions,
    condition_fingerprint,
    condition_result,
    finish_study,
    training_set,
)
from persona_tui.training.data import ConditionData
from persona_tui.training.deps import require_training
from persona_tui.training.loop import TrainOutcome, total_steps
from persona_tui.training.mlx_study import open_mlx_study
from persona_tui.training.params import (
    ConditionFinished,
    ConditionResult,
    TrainingEvent,
    TrainingParams,
    TrainingPhase,
)
from persona_tui.training.record import (
    CHECKPOINT_FOLDER,
    TrainingRecord,
    output_folder_lock,
    write_loss_csv,
    write_record,
)
from persona_tui.training.torch_study import open_torch_study, torch_precision

OnEvent = Callable[[TrainingEvent], None]


class StudyEngine(Protocol):
    """One engine's part of a study, opened on the base model with the chosen conditions
    tokenized (torch + peft: `open_torch_study`; mlx-lm: `open_mlx_study`); the study loop
    (`train_study`) does everything the engines share."""

    @property
    def base_sha256(self) -> str:
        """The base model's sha256 (of the GGUF; of an MLX folder's weights)."""
        ...

    @property
    def datasets(self) -> Sequence[ConditionData]:
        """The chosen conditions' token sequences, in the order they are trained."""
        ...

    @property
    def base_model(self) -> Mapping[str, str]:
        """study.toml's `[base_model]`."""
        ...

    @property
    def adapter_key(self) -> str:
        """The key that names each condition's adapter in study.toml's `[[adapters]]`."""
        ...

    def adapter(self, folder: Path) -> Path:
        """Where the finished adapter of the condition folder `folder` is."""
        ...

    def train(
        self,
        data: ConditionData,
        folder: Path,
        fingerprint: str,
        on_event: OnEvent,
        cancel: threading.Event | None,
    ) -> TrainOutcome:
        """Train (or resume, from `folder/checkpoint`) one condition on a fresh base model."""
        ...

    def save_adapter(
        self, data: ConditionData, folder: Path, outcome: TrainOutcome, on_event: OnEvent
    ) -> Path:
        """Leave the completed condition's adapter in `folder`; returns `adapter(folder)`."""
        ...

    def record(
        self, data: ConditionData, outcome: TrainOutcome, adapter: Path, fingerprint: str
    ) -> TrainingRecord:
        """The completed condition's `training.toml`."""
        ...


EngineOpener = Callable[
    [Scenario, Path, Sequence[Condition], TrainingParams, int, OnEvent], StudyEngine
]
"""Opens an engine on a model: (scenario, model path, chosen conditions, params, seed,
on_event) → the engine, its conditions tokenized."""


def _ignore(event: TrainingEvent) -> None:
    pass


def train_study(
    scenario: Scenario,
    model_path: Path,
    out_dir: Path,
    params: TrainingParams | None = None,
    on_event: OnEvent = _ignore,
    cancel: threading.Event | None = None,
    *,
    conditions: Sequence[str] | None = None,
) -> StudyResult:
    """Train the study's adapters (see the module docstring); stops early when cancelled.

    TrainingError when `out_dir` is held by another training (no waiting), the scenario is
    no training study, or the model, the data or a checkpoint does not fit.
    """
    params = params or TrainingParams()
    with output_folder_lock(Path(out_dir)):
        open_engine: EngineOpener
        if is_mlx_model(model_path):  # an MLX model folder: mlx-lm's LoRA
            if params.precision != "auto":
                raise TrainingError(
                    f"precision {params.precision!r} is a setting of torch training (a GGUF); "
                    "MLX trains in its model's own dtype: leave precision at auto"
                )
            open_engine = open_mlx_study
        else:  # a GGUF: torch + peft, whose libraries are checked before anything else
            require_training()
            params = torch_precision(params)
            open_engine = open_torch_study
        seed = training_set(scenario).seed
        chosen = chosen_conditions(scenario, conditions)
        engine = open_engine(scenario, Path(model_path), chosen, params, seed, on_event)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        results = _train_conditions(engine, out_dir, params, seed, on_event, cancel)
        return finish_study(
            out_dir, scenario, engine.base_model, engine.base_sha256, results, engine.adapter_key
        )


def _train_conditions(
    engine: StudyEngine,
    out_dir: Path,
    params: TrainingParams,
    seed: int,
    on_event: OnEvent,
    cancel: threading.Event | None,
) -> list[ConditionResult]:
    """Train each condition in turn (a finished one is skipped); stops at an interrupted one."""
    results: list[ConditionResult] = []
    for data in engine.datasets:
        folder = out_dir / data.condition
        folder.mkdir(parents=True, exist_ok=True)
        fingerprint = condition_fingerprint(engine.base_sha256, data, params, seed)
        total = total_steps(len(data.train), params)
        done = already_trained(folder, engine.adapter(folder), fingerprint, total)
        if done is not None:
            results.append(done)
            on_event(ConditionFinished(done))
            continue
        on_event(TrainingPhase(data.condition, "loading the model"))
        outcome = engine.train(data, folder, fingerprint, on_event, cancel)
        write_loss_csv(folder, outcome.rows)
        if not outcome.completed:
            result = condition_result(data, "interrupted", folder, None, outcome, total)
            results.append(result)
            on_event(ConditionFinished(result))
            break
        adapter = engine.save_adapter(data, folder, outcome, on_event)
        write_record(folder, engine.record(data, outcome, adapter, fingerprint))
        shutil.rmtree(folder / CHECKPOINT_FOLDER, ignore_errors=True)
        result = condition_result(data, "complete", folder, adapter, outcome, total)
        results.append(result)
        on_event(ConditionFinished(result))
    return results
