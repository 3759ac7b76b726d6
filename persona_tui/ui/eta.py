"""The time left of a pass (sampling's trials, the option pass's cells): one rule for both.

The rate is the pass's own: the time from its start to the latest item finished, over the
items finished since the start (items done by an earlier run are neither counted nor
waited for). It is an estimate only once `min_done` items are finished: with batched
decoding the first trials end together after the whole batch has run, and one item alone
says little (the first of a pass also pays for its cold prompt), so the Run screen asks for
at least two items, and for a whole batch of trials. Between items the estimate counts
down with the clock, but never below the time the items after the next one should take:
a slow item holds the estimate instead of driving it to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_DONE = 2  # items finished in a pass before it has an estimate


@dataclass
class PassEta:
    """When a pass started and its items finished; `remaining` is the estimate of its end."""

    total: int = 0
    done: int = 0
    done_at_start: int = 0
    min_done: int = MIN_DONE
    started_at: float | None = None
    last_at: float | None = None  # when the latest item finished
    stopped_at: float | None = None

    def start(self, now: float, done: int, total: int, min_done: int = MIN_DONE) -> None:
        """A pass of `total` items starts with `done` of them finished before."""
        self.total, self.done, self.done_at_start = total, done, done
        self.started_at, self.last_at, self.stopped_at = now, None, None
        # A pass with fewer items left than `min_done` has its estimate at its last item.
        self.min_done = max(1, min(min_done, total - done))

    def finished(self, now: float, done: int) -> None:
        """Items finished: `done` of `total` now."""
        self.done = done
        self.last_at = now

    def stop(self, now: float) -> None:
        self.stopped_at = now

    def elapsed(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        return (self.stopped_at if self.stopped_at is not None else now) - self.started_at

    def remaining(self, now: float) -> float | None:
        """Seconds left, or None while there is no honest estimate (too few items finished,
        or the pass stopped)."""
        finished_here = self.done - self.done_at_start
        if (
            self.started_at is None
            or self.last_at is None
            or self.stopped_at is not None
            or finished_here < self.min_done
        ):
            return None
        per_item = max(self.last_at - self.started_at, 0.0) / finished_here
        left = max(self.total - self.done, 0)
        if not left:
            return 0.0
        since_last = max(now - self.last_at, 0.0)
        return max(per_item * left - since_last, per_item * (left - 1))
