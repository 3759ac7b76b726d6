"""Progress on stderr shared by the commands: the bar of a pass, cancelling on SIGINT and
SIGTERM, and the passes that read activations (a trait's extraction, the projection pass)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from persona_tui.run.events import (
    ProjectionsProgress,
    RunEvent,
    VectorsExtracted,
    VectorsProgress,
)
from persona_tui.run.runner import RunControl


def progress_bar(console: Console) -> Progress:
    """A terminal bar for a pass: what it is on, done/total, its rate, elapsed and left."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@contextmanager
def cancel_on_signals(control: RunControl) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        control.cancel()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class VectorsReporter:
    """A bar (terminal) or a few lines (pipes) per extraction phase and for projections."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.label = ""
        self.clock = time.perf_counter()

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, VectorsProgress):
            self._step(f"{event.trait}: {event.phase}", event.done, event.total, "answers")
        elif isinstance(event, ProjectionsProgress):
            self._step("projections", event.done, event.total, "trials and cells")
        elif isinstance(event, VectorsExtracted):
            self._stop()
            self.console.print(
                f"{event.trait}: layer {event.layer} (held-out AUC {event.auc:.2f}), "
                f"{event.seconds:.0f}s -> {event.folder}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    def _step(self, label: str, done: int, total: int, unit: str) -> None:
        if label != self.label:
            self._stop()
            self.label = label
            self.clock = time.perf_counter()
            if self.console.is_terminal:
                self.progress = progress_bar(self.console)
                self.progress.start()
                self.task = self.progress.add_task(label, total=total, completed=done, rate="")
            else:
                self.console.print(f"{label}: {total - done} of {total} {unit}", highlight=False)
        if self.progress is not None and self.task is not None:
            rate = done / max(time.perf_counter() - self.clock, 1e-9)
            self.progress.update(self.task, completed=done, rate=f"{rate:.1f}/s")
        if done >= total:
            self._stop()

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.progress, self.task, self.label = None, None, ""
