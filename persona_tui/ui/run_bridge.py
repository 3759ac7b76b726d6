"""From a run's events (in the worker thread) to Textual messages (on the UI thread).

`RunBridge` is the `on_event` callback of `open_run` and `finish_run`: a
`CoalescingBridge` (see `bridge`) with two folds, `TextFold` and the option pass's
progress (`Latest`: the latest cell, at most 20 messages a second, the last at once).
Text chunks are accumulated per trial and turn and posted at most
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

from persona_tui.run.events import OptionsProgress, RunEvent, TextChunk
from persona_tui.run.plan import TrialSpec
from persona_tui.ui.bridge import CoalescingBridge, Fold, Latest

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
    """A run's `on_event` callback: batches text, coalesces the option pass's progress,
    forwards everything else.

    Called from the runner's own thread and its generation threads (the bridge locks);
    `post` must be thread-safe (`MessagePump.post_message` is).
    """

    def __init__(
        self,
        post: Callable[[Message], object],
        interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        progress = Latest(
            OptionsProgress,
            OPTIONS_INTERVAL,
            RunEventMessage,
            final=lambda event: event.done == event.total,
        )
        super().__init__(post, (TextFold(interval), progress), RunEventMessage, clock)
