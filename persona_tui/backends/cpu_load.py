"""How busy the CPUs are with other programs, so llama.cpp uses only the free cores.

llama.cpp's threads meet at a barrier after every operation of the graph (hundreds per
token). When another program keeps one of our cores busy, the thread that shares it is
descheduled and every barrier waits a scheduler slice for it: on 2 cores a 24-token trial
went from ~0.5 s to 30-50 s. `ThreadGovernor` therefore reads, before each generation,
how much CPU time other processes took on this process's cores since the last reading
(Linux /proc/stat minus our own CPU time) and gives llama.cpp only the cores left free.
The thread count does not change results (each output row is computed by one thread);
`tests/unit/test_llamacpp.py` checks that. Where /proc/stat is unreadable it never
lowers the count.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class _Reading:
    wall: float
    busy: float  # seconds of CPU time on our cores, everyone's
    own: float  # seconds of CPU time of this process


def _our_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _read(cpus: set[int] | None) -> _Reading | None:
    try:
        lines = Path("/proc/stat").read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None
    busy = 0
    seen = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            index = int(name[3:])
            fields = [int(x) for x in rest.split()]
        except ValueError:
            continue
        if cpus is not None and index not in cpus:
            continue
        # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
        busy += sum(fields[:8]) - fields[3] - (fields[4] if len(fields) > 4 else 0)
        seen += 1
    if not seen:
        return None
    times = os.times()
    return _Reading(time.monotonic(), busy / _TICKS, times.user + times.system)


def other_busy_cores(before: _Reading, after: _Reading) -> float:
    """Cores' worth of CPU that other processes used between two readings."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    others = (after.busy - before.busy) - (after.own - before.own)
    return max(0.0, others / wall)


class ThreadGovernor:
    """The thread count for the next generation: `max_threads` minus the busy cores.

    A core counts as busy when other processes used more than half of it since the last
    call (at least `min_window` seconds ago; a shorter window keeps the last answer).
    """

    def __init__(self, max_threads: int, *, min_window: float = 0.05) -> None:
        self.max_threads = max_threads
        self._cpus = _our_cpus()
        self._min_window = min_window
        self._last = _read(self._cpus)
        self._threads = max_threads
        self.others = 0.0

    def threads(self) -> int:
        now = _read(self._cpus)
        if now is None or self._last is None:
            return self._threads
        if now.wall - self._last.wall < self._min_window:
            return self._threads
        self.others = other_busy_cores(self._last, now)
        self._last = now
        busy = int(self.others + 0.5)
        self._threads = max(1, min(self.max_threads, self.max_threads - busy))
        return self._threads

    def settle(self, seconds: float = 0.2) -> int:
        """Measure over `seconds` now (at load, before the first generation)."""
        self._last = _read(self._cpus)
        time.sleep(seconds)
        return self.threads()
