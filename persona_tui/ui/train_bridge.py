"""From training events (in the worker thread) to Textual messages (on the UI thread).

`TrainBridge` is `train_study`'s `on_event` callback, called from its thread after every
optimizer step: a `CoalescingBridge` (see `bridge`) with one fold, `StepsFold`. Steps are
collected and posted at most once per `interval` seconds as one `TrainingSteps` message
(the latest step plus every loss since the previous message, so the chart misses none);
every other event is posted at once as a `TrainingEventMessage`, after the pending steps,
so messages arrive in the order the trainer produced them. A fast model thus never floods
the UI with messages; the screen calls `flush` on a timer so a held-back step never waits
for the next one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from textual.message import Message

from persona_tui.training.params import StepFinished, TrainingEvent
from persona_tui.ui.bridge import CoalescingBridge, Fold

FLUSH_INTERVAL = 0.05


@dataclass
class TrainingEventMessage(Message):
    """A training event other than a step (phase, started, held-out, checkpoint, finished)."""

    event: TrainingEvent


@dataclass
class TrainingSteps(Message):
    """The steps of one run (condition, replicate) finished since the previous message
    (oldest first)."""

    steps: tuple[StepFinished, ...]

    @property
    def latest(self) -> StepFinished:
        return self.steps[-1]


class StepsFold(Fold[StepFinished]):
    """Steps, kept in order into one `TrainingSteps`; a step of another condition or
    replicate starts another message (never mixed)."""

    def __init__(self, interval: float = FLUSH_INTERVAL) -> None:
        super().__init__(StepFinished, interval)
        self._pending: list[StepFinished] = []

    def starts_new(self, event: StepFinished) -> bool:
        last = self._pending[-1]
        return (last.condition, last.replicate) != (event.condition, event.replicate)

    def add(self, event: StepFinished) -> None:
        self._pending.append(event)

    def take(self) -> TrainingSteps:
        steps = tuple(self._pending)
        self._pending.clear()
        return TrainingSteps(steps)


class TrainBridge(CoalescingBridge[TrainingEvent]):
    """`train_study`'s `on_event` callback: batches steps, forwards everything else."""

    def __init__(
        self,
        post: Callable[[Message], object],
        interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(post, (StepsFold(interval),), TrainingEventMessage, clock)
