"""From events in a worker thread to Textual messages on the UI thread, coalesced.

A worker (the runner, `train_study`, the option pass) reports progress by calling an
`on_event` callback from its own thread, often far faster than the UI can repaint (a token,
a training step, a scored cell). `CoalescingBridge` is that callback for the app: the event
kinds it is given a `Fold` for are held back and folded into one pending message, posted at
most once per the fold's interval (the first event at once, since nothing was posted
before); every other event is posted at once as `forward(event)`, after whatever was held
back, so messages arrive in the order the worker produced them. The UI thread thus wakes
and repaints a bounded number of times a second, however fast the worker goes.

What a kind's pending state is, and the message it becomes, is the fold's: the text per
trial (`run_bridge.TextFold`), the steps of one condition (`train_bridge.StepsFold`), or
just the latest event (`Latest`, the option pass's progress). Adding a coalesced kind to a
stream is adding its fold to the bridge's `folds`. Only one fold holds events at a time:
an event of another kind posts what is held first, which keeps the order across kinds.

The bridge posts only when it is called: a screen whose worker may pause between events
calls `flush` on a timer, so a held-back event never waits for the next one.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from textual.message import Message

E = TypeVar("E")  # an event kind a fold holds back
S = TypeVar("S")  # the events of a stream (usually a union of event classes)


class Fold(ABC, Generic[E]):
    """How a bridge holds back events of one kind (`kind`, subclasses included).

    A fold instance keeps the pending state of one bridge, so every bridge gets its own.
    The bridge calls it under its lock: a fold needs no locking of its own.
    """

    def __init__(self, kind: type[E], interval: float) -> None:
        self.kind = kind
        self.interval = interval  # seconds between two posts of this kind, at least

    def hold(self) -> float:
        """How long after the previous post the pending events may go out (the interval by
        default; a fold may stretch it for what it holds now)."""
        return self.interval

    def starts_new(self, event: E) -> bool:
        """Whether the pending events must be posted before `event` joins them (they would
        not fold into one message). Called only while events are pending."""
        return False

    def urgent(self, event: E) -> bool:
        """Whether the pending events, `event` included, go out now whatever the interval."""
        return False

    @abstractmethod
    def add(self, event: E) -> None:
        """Fold `event` into the pending state."""

    @abstractmethod
    def take(self) -> Message:
        """The pending events as one message; the pending state is empty afterwards.
        Called only after at least one `add`."""


class Latest(Fold[E]):
    """Keeps only the latest event of its kind: a progress report supersedes the previous.

    Events held back and superseded are never posted; `final(event)` says which event must
    go out at once (e.g. the last step of a pass).
    """

    def __init__(
        self,
        kind: type[E],
        interval: float,
        message: Callable[[E], Message],
        final: Callable[[E], bool] = lambda event: False,
    ) -> None:
        super().__init__(kind, interval)
        self._message = message
        self._final = final
        self._latest: E | None = None

    def urgent(self, event: E) -> bool:
        return self._final(event)

    def add(self, event: E) -> None:
        self._latest = event

    def take(self) -> Message:
        assert self._latest is not None
        latest, self._latest = self._latest, None
        return self._message(latest)


class CoalescingBridge(Generic[S]):
    """A worker's `on_event` callback: folds the events its `folds` hold, forwards the rest.

    Called from worker threads (the runner's generation threads too), so the pending state
    is guarded by a lock; `post` must be thread-safe (`MessagePump.post_message` is).
    `forward` None: every event of the stream is of a folded kind (any other is a bug).
    """

    def __init__(
        self,
        post: Callable[[Message], object],
        folds: Sequence[Fold[Any]],
        forward: Callable[[S], Message] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._post = post
        self._folds = tuple(folds)
        self._forward = forward
        self._clock = clock
        self._held: Fold[Any] | None = None  # the fold with pending events, if any
        self._last_post = {id(fold): float("-inf") for fold in self._folds}
        self._lock = threading.Lock()

    def __call__(self, event: S) -> None:
        with self._lock:
            fold = next((f for f in self._folds if isinstance(event, f.kind)), None)
            if fold is None:
                if self._forward is None:
                    raise TypeError(f"no fold for a {type(event).__name__} event")
                self._flush()
                self._post(self._forward(event))
                return
            if self._held is not None and (self._held is not fold or fold.starts_new(event)):
                self._flush()
            fold.add(event)
            self._held = fold
            elapsed = self._clock() - self._last_post[id(fold)]
            if elapsed >= fold.hold() or fold.urgent(event):
                self._flush()

    def flush(self) -> None:
        """Post the pending events now."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        fold, self._held = self._held, None
        if fold is None:
            return
        message = fold.take()
        self._last_post[id(fold)] = self._clock()
        self._post(message)
