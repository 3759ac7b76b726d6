"""A gate on a worker thread's saves: the test lets them through one at a time.

The app's option pass takes a millisecond a cell on the tiny model; holding each save until
the test says so puts the screens in the state of a slow pass (scoring, some cells done)
for as long as the test looks at them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from persona_tui.session.store import SessionStore


class Gate:
    """Holds the worker before each save until `allow` lets one more through; `open`
    (or `also`, e.g. the run's cancel event, when set) lets everything through."""

    def __init__(self) -> None:
        self.permits = threading.Semaphore(0)
        self.open = threading.Event()
        self.also: threading.Event | None = None

    def is_open(self) -> bool:
        return self.open.is_set() or (self.also is not None and self.also.is_set())

    def wait(self) -> None:
        # Bounded: a test that fails while the worker waits must not hang the app's exit.
        deadline = time.monotonic() + 20
        while not self.is_open() and not self.permits.acquire(timeout=0.05):
            if time.monotonic() > deadline:
                return

    def allow(self, n: int = 1) -> None:
        for _ in range(n):
            self.permits.release()


def gated(gate: Gate, save: Callable[..., None]) -> Callable[..., None]:
    def wait_then_save(store: SessionStore, *args: Any) -> None:
        gate.wait()
        save(store, *args)

    return wait_then_save
