"""The training loop both trainers share: steps, held-out loss, events, checkpoints, resume.

`run_training_loop` drives one condition's fine-tune on an engine: torch + peft
(training/lora.py) or mlx-lm (training/mlx_lora.py). The engine does the engine-specific
parts (`TrainingEngine`: one optimizer step on a batch, the held-out loss, saving and
loading a checkpoint); the loop owns the rest, the same for both: the seeded batch order,
the loss rows, the progress events, a checkpoint every `checkpoint_every` steps, when
`cancel` is set, and on KeyboardInterrupt outside an update, and resuming from one.
Exporting the finished adapter stays with each trainer (its format is the engine's).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from persona_tui.training.data import ConditionData, TokenizedExample
from persona_tui.training.params import (
    CheckpointSaved,
    HeldoutEvaluated,
    StepFinished,
    TrainingEvent,
    TrainingParams,
    TrainingStarted,
)


@dataclass
class LossRow:
    step: int
    epoch: int
    train_loss: float | None
    heldout_loss: float | None
    seconds: float


@dataclass
class TrainOutcome:
    """What a condition's training ended with; `model` is the engine's model (torch's peft
    model, for saving and comparing; None for MLX, which trains a model it was given)."""

    completed: bool
    steps: int
    total_steps: int
    rows: list[LossRow] = field(default_factory=list)
    seconds: float = 0.0
    model: Any = None

    @property
    def train_loss(self) -> float | None:
        losses = [r.train_loss for r in self.rows if r.train_loss is not None]
        return losses[-1] if losses else None

    @property
    def heldout_loss(self) -> float | None:
        losses = [r.heldout_loss for r in self.rows if r.heldout_loss is not None]
        return losses[-1] if losses else None


def total_steps(n_train: int, params: TrainingParams) -> int:
    """Optimizer steps of a run: epochs × batches per epoch, capped by max_steps."""
    steps = params.epochs * math.ceil(n_train / params.batch_size)
    return min(steps, params.max_steps) if params.max_steps is not None else steps


def run_tokens(
    data: ConditionData, params: TrainingParams, seed: int, steps: int | None = None
) -> int:
    """The tokens (prompt and completion) a run's steps (its first `steps`, None: all)
    train on, in its seeded order."""
    total = total_steps(len(data.train), params)
    if steps is not None:
        total = min(total, steps)
    return sum(
        len(data.train[i].ids)
        for step in range(total)
        for i in batch_indices(len(data.train), step, params.batch_size, seed)
    )


def batch_indices(n_train: int, step: int, batch_size: int, seed: int) -> list[int]:
    """The examples of optimizer step `step` (each epoch a seeded shuffle, last batch short)."""
    per_epoch = math.ceil(n_train / batch_size)
    epoch, index = divmod(step, per_epoch)
    order = list(range(n_train))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order[index * batch_size : (index + 1) * batch_size]


class TrainingEngine(Protocol):
    """The engine-specific steps of a fine-tune (the LoRA layers are already in place)."""

    def train_step(self, batch: Sequence[TokenizedExample]) -> float:
        """One optimizer update on `batch`; returns its training loss."""
        ...

    def heldout_loss(self, examples: Sequence[TokenizedExample]) -> float:
        """Mean cross-entropy per completion token over `examples`, without training."""
        ...

    def load_checkpoint(self, outcome: TrainOutcome) -> bool:
        """Restore a checkpoint into the engine and `outcome` (steps, rows, seconds);
        False when there is none. TrainingError for one of other data or settings."""
        ...

    def save_checkpoint(self, outcome: TrainOutcome) -> Path:
        """Write a checkpoint of the engine and `outcome` atomically; returns where."""
        ...


def run_training_loop(
    data: ConditionData,
    engine: TrainingEngine,
    params: TrainingParams,
    seed: int,
    on_event: Callable[[TrainingEvent], None],
    cancel: threading.Event | None = None,
    outcome: TrainOutcome | None = None,
    replicate: int = 1,
) -> TrainOutcome:
    """Train (or resume) `data.condition`'s replicate `replicate` (trained with `seed`,
    the replicate's) on `engine` until done or cancelled (see the module docstring);
    `outcome.completed` says which."""
    condition = data.condition
    total = total_steps(len(data.train), params)
    per_epoch = math.ceil(len(data.train) / params.batch_size)
    if outcome is None:
        outcome = TrainOutcome(completed=False, steps=0, total_steps=total)
    resumed = engine.load_checkpoint(outcome)
    on_event(
        TrainingStarted(
            condition,
            total,
            min(outcome.steps, total),
            len(data.train),
            len(data.heldout),
            replicate,
        )
    )
    started = time.perf_counter()
    offset = outcome.seconds

    def elapsed() -> float:
        return offset + time.perf_counter() - started

    def save() -> None:
        outcome.seconds = elapsed()
        where = engine.save_checkpoint(outcome)
        on_event(CheckpointSaved(condition, outcome.steps, where, replicate))

    if outcome.steps == 0 and not resumed and data.heldout:
        loss = engine.heldout_loss(data.heldout)
        outcome.rows.append(LossRow(0, 0, None, loss, 0.0))
        on_event(HeldoutEvaluated(condition, 0, loss, replicate))
    run_tokens = 0
    run_steps = 0
    in_update = False
    try:
        while outcome.steps < total:
            step = outcome.steps
            indices = batch_indices(len(data.train), step, params.batch_size, seed)
            batch = [data.train[i] for i in indices]
            in_update = True
            loss = engine.train_step(batch)
            in_update = False
            outcome.steps = step + 1
            run_steps += 1
            run_tokens += sum(len(e.ids) for e in batch)
            run_seconds = time.perf_counter() - started
            row = LossRow(outcome.steps, step // per_epoch, loss, None, elapsed())
            outcome.rows.append(row)
            last = outcome.steps == total
            if data.heldout and (outcome.steps % params.checkpoint_every == 0 or last):
                row.heldout_loss = engine.heldout_loss(data.heldout)
            on_event(
                StepFinished(
                    condition,
                    outcome.steps,
                    total,
                    step // per_epoch,
                    loss,
                    run_tokens / max(run_seconds, 1e-9),
                    run_seconds / run_steps * (total - outcome.steps),
                    replicate,
                )
            )
            if row.heldout_loss is not None:
                on_event(HeldoutEvaluated(condition, outcome.steps, row.heldout_loss, replicate))
            if last:
                break
            if cancel is not None and cancel.is_set():
                save()
                outcome.seconds = elapsed()
                return outcome
            if outcome.steps % params.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        if not in_update and outcome.steps > 0:
            save()
        raise
    outcome.seconds = elapsed()
    outcome.completed = True
    return outcome
