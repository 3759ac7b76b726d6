"""From runner events (in the worker thread) to Textual messages (on the UI thread).

The runner calls `RunBridge` from the generation thread. Text chunks are accumulated
per trial and turn and posted at most once per `interval` seconds (10 updates/s by
default, about 3 while several trials stream; one `TextBatch` holding the text of every trial
that produced some), so the UI
never sets the generation speed, however many sequences stream at once (batched decoding
interleaves the chunks of up to N trials): one message, one wake-up of the UI thread and
one repaint per interval whatever the number of streams. Every other event is posted at
once, after flushing pending text, so messages arrive in the order the runner produced
them; but the option pass's progress, at most every `OPTIONS_INTERVAL` (a later one
carries the earlier ones' count; the last cell's is always posted).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from textual.message import Message

from persona_tui.run.events import OptionsProgress, RunEvent, TextChunk
from persona_tui.run.plan import TrialSpec

# Every update costs the UI thread a repaint whose price is set by Textual's compositor
# (a few ms, however little changed), and that CPU is taken from generation: 10 updates
# a second still read as a smooth stream and cost half of 20 (measured: bench_tui --ui-only).
FLUSH_INTERVAL = 0.1
# A repaint costs more with more streams in it (bench_tui --ui-only on the AMX machine:
# ~5 ms for one stream, ~9.5 ms for eight in one column; ~20 ms for eight on the AMD EPYC
# with the header and titles), so while several trials stream at once (batched decoding)
# the interval is this many times longer. 3 rather than 2: bench_tui with 8 streams, 3
# alternated runs each, app/CLI 0.943 against 0.894 (docs/benchmarks.md).
SEVERAL_STREAMS_FACTOR = 3
# The option pass's progress: at most 20 updates a second (a cell of the tiny test model
# takes a millisecond; the bar need not move faster).
OPTIONS_INTERVAL = 0.05


@dataclass
class RunEventMessage(Message):
    """A run event other than text (model loaded, session opened, trial started/finished/
    failed, run started/finished, the option pass)."""

    event: RunEvent


@dataclass(frozen=True)
class TextPart:
    """Text generated for one trial's turn since the previous batch."""

    spec: TrialSpec
    turn: int
    text: str


@dataclass
class TextBatch(Message):
    """The text of every trial that produced some since the previous batch, each trial's
    parts in order."""

    parts: tuple[TextPart, ...]


class RunBridge:
    """The runner's `on_event` callback: batches text, forwards everything else.

    The runner calls it from its own thread and from its generation threads, so the
    pending text is guarded by a lock; `post` must be thread-safe
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
        # Text not posted yet, per (trial, turn), in the order each target first had text.
        self._pending: dict[tuple[TrialSpec, int], list[str]] = {}
        self._last_flush = float("-inf")
        self._last_progress = float("-inf")
        self._lock = threading.Lock()

    def __call__(self, event: RunEvent) -> None:
        with self._lock:
            if isinstance(event, TextChunk):
                self._add_text(event)
                return
            if isinstance(event, OptionsProgress) and event.done < event.total:
                now = self._clock()
                if now - self._last_progress < OPTIONS_INTERVAL:
                    return
                self._last_progress = now
            self._flush()
            self._post(RunEventMessage(event))

    def _add_text(self, chunk: TextChunk) -> None:
        target = (chunk.spec, chunk.turn)
        pending = self._pending.get(target)
        if pending is None:
            pending = self._pending[target] = []
        pending.append(chunk.text)
        interval = self._interval * (SEVERAL_STREAMS_FACTOR if len(self._pending) > 1 else 1)
        if self._clock() - self._last_flush >= interval:
            self._flush()

    def flush(self) -> None:
        """Post the pending text now."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        self._last_flush = self._clock()
        self._post(
            TextBatch(
                tuple(
                    TextPart(spec, turn, "".join(parts)) for (spec, turn), parts in pending.items()
                )
            )
        )
