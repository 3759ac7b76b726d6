"""From training events (in the worker thread) to Textual messages (on the UI thread).

`train_study` calls `TrainBridge` from its thread after every optimizer step. Steps are
collected and posted at most once per `interval` seconds as one `TrainingSteps` message
(the latest step plus every loss since the previous message, so the chart misses none);
every other event is posted at once, after the pending steps, so messages arrive in the
order the trainer produced them. A fast model thus never floods the UI with messages; the
screen calls `flush` on a timer so a held-back step never waits for the next one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from textual.message import Message

from persona_tui.training.params import StepFinished, TrainingEvent

FLUSH_INTERVAL = 0.05


@dataclass
class TrainingEventMessage(Message):
    """A training event other than a step (phase, started, held-out, checkpoint, finished)."""

    event: TrainingEvent


@dataclass
class TrainingSteps(Message):
    """The steps of one condition finished since the previous message (oldest first)."""

    steps: tuple[StepFinished, ...]

    @property
    def latest(self) -> StepFinished:
        return self.steps[-1]


class TrainBridge:
    """`train_study`'s `on_event` callback: batches steps, forwards everything else."""

    def __init__(
        self,
        post: Callable[[Message], object],
        interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._post = post
        self._interval = interval
        self._clock = clock
        self._pending: list[StepFinished] = []
        self._last_flush = float("-inf")
        self._lock = threading.Lock()

    def __call__(self, event: TrainingEvent) -> None:
        with self._lock:
            if isinstance(event, StepFinished):
                if self._pending and self._pending[-1].condition != event.condition:
                    self._flush()
                self._pending.append(event)
                if self._clock() - self._last_flush >= self._interval:
                    self._flush()
                return
            self._flush()
            self._post(TrainingEventMessage(event))

    def flush(self) -> None:
        """Post the pending steps now."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        steps = tuple(self._pending)
        self._pending.clear()
        self._last_flush = self._clock()
        self._post(TrainingSteps(steps))
