"""From runner events (in the worker thread) to Textual messages (on the UI thread).

`RunBridge` is the runner's `on_event` callback: a `CoalescingBridge` (see `bridge`) with
one fold, `TextFold`. Text chunks are accumulated per trial and turn and posted at most
once per `interval` seconds (10 updates/s by default, about 3 while several trials stream;
one `TextBatch` holding the text of every trial that produced some), so the UI never sets
the generation speed, however many sequences stream at once (batched decoding interleaves
the chunks of up to N trials): one message, one wake-up of the UI thread and one repaint
per interval whatever the number of streams. Every other event is posted at once as a
`RunEventMessage`, after flushing pending text, so messages arrive in the order the runner
produced them. Another coalesced kind of run event is another fold in `RunBridge`'s list.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from textual.message import Message

from persona_tui.run.plan import TrialSpec
from persona_tui.run.runner import RunEvent, TextChunk
from persona_tui.ui.bridge import CoalescingBridge, Fold

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


@dataclass
class RunEventMessage(Message):
    """A runner event other than text (trial started/finished/failed, run started/finished)."""

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


class TextFold(Fold[TextChunk]):
    """Text chunks, joined per (trial, turn) into one `TextBatch`; held longer while
    several trials stream."""

    def __init__(self, interval: float = FLUSH_INTERVAL) -> None:
        super().__init__(TextChunk, interval)
        # Text not posted yet, per (trial, turn), in the order each target first had text.
        self._pending: dict[tuple[TrialSpec, int], list[str]] = {}

    def hold(self) -> float:
        return self.interval * (SEVERAL_STREAMS_FACTOR if len(self._pending) > 1 else 1)

    def add(self, event: TextChunk) -> None:
        target = (event.spec, event.turn)
        pending = self._pending.get(target)
        if pending is None:
            pending = self._pending[target] = []
        pending.append(event.text)

    def take(self) -> TextBatch:
        pending, self._pending = self._pending, {}
        return TextBatch(
            tuple(TextPart(spec, turn, "".join(parts)) for (spec, turn), parts in pending.items())
        )


class RunBridge(CoalescingBridge[RunEvent]):
    """The runner's `on_event` callback: batches text, forwards everything else.

    Called from the runner's own thread and its generation threads (the bridge locks);
    `post` must be thread-safe (`MessagePump.post_message` is).
    """

    def __init__(
        self,
        post: Callable[[Message], object],
        interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(post, (TextFold(interval),), RunEventMessage, clock)
