"""Train a training study: one LoRA adapter per training condition, on the same completions.

`train_study(scenario, model_path, out_dir, params, on_event, cancel)` is the one entry
point for the CLI (`persona-tui train`, `persona-tui study`) and the app's Training screen.
It holds the output folder's lock, opens the engine the model asks for (a GGUF: torch + peft
on its float32 weights, "auto" precision resolved for this CPU, training/torch_study.py; an
MLX model folder: mlx-lm's LoRA, training/mlx_study.py), which tokenizes the chosen
conditions with the model's own tokenizer, sends the plan (`TrainingPlanned`: every run and
the estimated time, training/estimate.py) and runs the one study loop here: each condition
in turn, each of its replicates k = 1..N in turn (`replicates`: the scenario's `[training]
replicates` unless given; replicate k trains with `replicate_seed(seed, k)`), is skipped when
its record matches the data and settings, else trained (resuming a checkpoint when there is
one), and leaves in `R = replicate_folder(out_dir, condition, k)`:

    R/<adapter>          the engine's adapter (`adapter.gguf` + `peft/`, or mlx-lm's `mlx/`)
    R/loss.csv           the loss curve
    R/training.toml      the training record (`[replicate]` index, of, seed)
    R/checkpoint/        only while unfinished
    out_dir/study.toml   the scenario, base model, replicates and adapters

Setting `cancel` stops after the current step with a checkpoint saved (status
"interrupted"); the runs after it are left for the next call.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from persona_tui.backends.detect import is_mlx_model
from persona_tui.errors import TrainingError
from persona_tui.run.adapters import checkpoint_folder
from persona_tui.scenario.model import Condition, Scenario
from persona_tui.training.conditions import (
    Replicate,
    StudyResult,
    already_trained,
    chosen_conditions,
    condition_fingerprint,
    condition_result,
    finish_study,
    replicate_folder,
    replicates_of,
    training_set,
)
from persona_tui.training.data import ConditionData
from persona_tui.training.deps import require_training
from persona_tui.training.estimate import measured_seconds_per_token
from persona_tui.training.loop import TrainOutcome, run_tokens, total_steps
from persona_tui.training.mlx_study import open_mlx_study
from persona_tui.training.params import (
    CheckpointSaved,
    ConditionFinished,
    ConditionResult,
    TrainingEvent,
    TrainingParams,
    TrainingPhase,
    TrainingPlan,
    TrainingPlanned,
    TrainingRun,
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
        """Where the finished adapter of the run folder `folder` is."""
        ...

    def train(
        self,
        data: ConditionData,
        folder: Path,
        fingerprint: str,
        replicate: Replicate,
        on_event: OnEvent,
        cancel: threading.Event | None,
    ) -> TrainOutcome:
        """Train (or resume, from `folder/checkpoint`) one replicate of a condition on a
        fresh base model, with `replicate.seed`."""
        ...

    def save_adapter(
        self,
        data: ConditionData,
        folder: Path,
        outcome: TrainOutcome,
        replicate: Replicate,
        on_event: OnEvent,
    ) -> Path:
        """Leave the completed run's adapter in `folder`; returns `adapter(folder)`."""
        ...

    def record(
        self,
        data: ConditionData,
        outcome: TrainOutcome,
        adapter: Path,
        fingerprint: str,
        replicate: Replicate,
        trained_tokens: int,
    ) -> TrainingRecord:
        """The completed run's `training.toml`."""
        ...

    def snapshot(
        self,
        data: ConditionData,
        checkpoint: Path,
        folder: Path,
        fingerprint: str,
        replicate: Replicate,
        total: int,
    ) -> Path:
        """Leave the adapter of the checkpoint `checkpoint` (a run's, mid-training) in
        `folder` with its `training.toml` (its steps so far); returns the adapter.
        TrainingError where the engine keeps no checkpoint adapters."""
        ...


EngineOpener = Callable[[Scenario, Path, Sequence[Condition], TrainingParams, OnEvent], StudyEngine]
"""Opens an engine on a model: (scenario, model path, chosen conditions, params, on_event)
→ the engine, its conditions tokenized (the held-out split by the study's seed)."""


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
    replicates: int | None = None,
    keep_checkpoints: bool = False,
) -> StudyResult:
    """Train the study's adapters (see the module docstring); stops early when cancelled.

    `replicates` None: the scenario's `[training] replicates`. `keep_checkpoints`: each
    run also leaves the adapter of every checkpoint (each `checkpoint_every` steps) in
    RUN/checkpoints/step-<n>/ (run/adapters.py `checkpoint_folder`), for probing the
    trajectory (`study --probe-checkpoints`); a finished run without them is an error.
    TrainingError when `out_dir` is held by another training (no waiting), the scenario is
    no training study, `replicates` < 1, or the model, the data or a checkpoint does not fit.
    """
    params = params or TrainingParams()
    study = training_set(scenario)
    n = study.replicates if replicates is None else replicates
    if n < 1:
        raise TrainingError(f"replicates must be at least 1, got {n}")
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
        chosen = chosen_conditions(scenario, conditions)
        engine = open_engine(scenario, Path(model_path), chosen, params, on_event)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        runs = [
            _Run(data, replicate, replicate_folder(out_dir, data.condition, replicate.index))
            for data in engine.datasets
            for replicate in replicates_of(study.seed, n)
        ]
        on_event(TrainingPlanned(_plan(engine, out_dir, params, runs, n)))
        results = _train_runs(engine, params, runs, on_event, cancel, keep_checkpoints)
        return finish_study(
            out_dir,
            scenario,
            engine.base_model,
            engine.base_sha256,
            results,
            engine.adapter_key,
            n,
        )


@dataclass(frozen=True)
class _Run:
    """One replicate of one condition, and its folder."""

    data: ConditionData
    replicate: Replicate
    folder: Path


def _finished(
    engine: StudyEngine, params: TrainingParams, run: _Run
) -> tuple[str, int, ConditionResult | None]:
    """The run's fingerprint, total steps, and its result when it is finished already."""
    fingerprint = condition_fingerprint(engine.base_sha256, run.data, params, run.replicate.seed)
    total = total_steps(len(run.data.train), params)
    adapter = engine.adapter(run.folder)
    done = already_trained(
        run.data.condition, run.replicate, run.folder, adapter, fingerprint, total
    )
    return fingerprint, total, done


def _plan(
    engine: StudyEngine, out_dir: Path, params: TrainingParams, runs: Sequence[_Run], n: int
) -> TrainingPlan:
    """Every run's steps and tokens, which are done, and the seconds per token measured."""
    planned = tuple(
        TrainingRun(
            run.data.condition,
            run.replicate.index,
            total_steps(len(run.data.train), params),
            run_tokens(run.data, params, run.replicate.seed),
            _finished(engine, params, run)[2] is not None,
        )
        for run in runs
    )
    per_token, measured = measured_seconds_per_token(out_dir, engine.base_sha256, params.precision)
    return TrainingPlan(planned, n, per_token, measured)


def _train_runs(
    engine: StudyEngine,
    params: TrainingParams,
    runs: Sequence[_Run],
    on_event: OnEvent,
    cancel: threading.Event | None,
    keep_checkpoints: bool = False,
) -> list[ConditionResult]:
    """Train each run in turn (a finished one is skipped); stops at an interrupted one."""
    results: list[ConditionResult] = []
    for run in runs:
        data, replicate, folder = run.data, run.replicate, run.folder
        fingerprint, total, done = _finished(engine, params, run)
        if done is not None:
            if keep_checkpoints:
                _check_snapshots(engine, run, checkpoint_steps(total, params))
            results.append(done)
            on_event(ConditionFinished(done))
            continue
        folder.mkdir(parents=True, exist_ok=True)
        on_event(TrainingPhase(data.condition, "loading the model", replicate.index))
        events = on_event
        if keep_checkpoints:
            events = _snapshotting(engine, run, fingerprint, total, params, on_event)
        outcome = engine.train(data, folder, fingerprint, replicate, events, cancel)
        write_loss_csv(folder, outcome.rows)
        if not outcome.completed:
            result = condition_result(data, replicate, "interrupted", folder, None, outcome, total)
            results.append(result)
            on_event(ConditionFinished(result))
            break
        if keep_checkpoints:
            _check_snapshots(engine, run, checkpoint_steps(total, params))
        adapter = engine.save_adapter(data, folder, outcome, replicate, on_event)
        tokens = run_tokens(data, params, replicate.seed)
        record = engine.record(data, outcome, adapter, fingerprint, replicate, tokens)
        write_record(folder, record)
        shutil.rmtree(folder / CHECKPOINT_FOLDER, ignore_errors=True)
        result = condition_result(data, replicate, "complete", folder, adapter, outcome, total)
        results.append(result)
        on_event(ConditionFinished(result))
    return results


def checkpoint_steps(total: int, params: TrainingParams) -> list[int]:
    """The steps a run of `total` steps checkpoints at before its end (its trajectory)."""
    return list(range(params.checkpoint_every, total, params.checkpoint_every))


def _snapshotting(
    engine: StudyEngine,
    run: _Run,
    fingerprint: str,
    total: int,
    params: TrainingParams,
    on_event: OnEvent,
) -> OnEvent:
    """`on_event`, and after each regular checkpoint its adapter kept (`engine.snapshot`)."""

    def handle(event: TrainingEvent) -> None:
        on_event(event)
        if isinstance(event, CheckpointSaved) and event.step in checkpoint_steps(total, params):
            where = checkpoint_folder(run.folder, event.step)
            engine.snapshot(run.data, event.path, where, fingerprint, run.replicate, total)

    return handle


def _check_snapshots(engine: StudyEngine, run: _Run, steps: Sequence[int]) -> None:
    """TrainingError when a finished run lacks the adapter of one of its checkpoints."""
    missing = [s for s in steps if not engine.adapter(checkpoint_folder(run.folder, s)).exists()]
    if missing:
        raise TrainingError(
            f"{run.folder} was trained without keeping its checkpoints' adapters (steps "
            f"{', '.join(map(str, missing))} are missing), so its trajectory cannot be "
            "probed; train the study again into another folder (-o) with "
            "--probe-checkpoints (or --keep-checkpoints), or probe without them"
        )
