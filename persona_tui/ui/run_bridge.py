"""From runner events (in the worker thread) to Textual messages (on the UI thread).

The runner calls `RunBridge` from the generation thread. Text chunks are accumulated
and posted at most once per `interval` seconds (20 updates/s by default), so the UI
never sets the generation speed; every other event is posted at once, after flushing
pending text, so messages arrive in the order the runner produced them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from textual.message import Message

from persona_tui.runner import RunEvent, TextChunk, TrialSpec

FLUSH_INTERVAL = 0.05


@dataclass
class RunEventMessage(Message):
    """A runner event other than text (trial started/finished/failed, run started/finished)."""

    event: RunEvent


@dataclass
class TextBatch(Message):
    """Text generated for one trial's turn since the previous batch."""

    spec: TrialSpec
    turn: int
    text: str


class RunBridge:
    """The runner's `on_event` callback: batches text, forwards everything else.

    Used from one thread only (the worker's); `post` must be thread-safe
    (`MessagePump.post_message` is).
    """

    def __init__(
        self,
        post: Callable[[Message], object],
        interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._post = post
        self._interval = interval
        self._clock = clock
        self._pending: list[str] = []
        self._pending_for: tuple[TrialSpec, int] | None = None
        self._last_flush = float("-inf")
        self.batches_posted = 0

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, TextChunk):
            self._add_text(event)
            return
        self.flush()
        self._post(RunEventMessage(event))

    def _add_text(self, chunk: TextChunk) -> None:
        target = (chunk.spec, chunk.turn)
        if self._pending_for is not None and self._pending_for != target:
            self.flush()
        self._pending_for = target
        self._pending.append(chunk.text)
        if self._clock() - self._last_flush >= self._interval:
            self.flush()

    def flush(self) -> None:
        """Post the pending text now (called before every non-text event)."""
        if self._pending_for is None or not self._pending:
            return
        spec, turn = self._pending_for
        text = "".join(self._pending)
        self._pending.clear()
        self._last_flush = self._clock()
        self.batches_posted += 1
        self._post(TextBatch(spec, turn, text))
