"""The option pass on the Run screen: a line and a bar while a run scores answer options.

`run.finish.finish_run` scores the options after sampling, in the Run screen's worker,
and reports `OptionsStarted`, `OptionsProgress` and `OptionsFinished` through the run's
events; the screen hands them to `OptionsPassPanel.show`. A cancel leaves the session
"interrupted", so resuming it scores the rest; a backend without log-probabilities is
told, not fatal. When the pass ends the panel posts `OptionsPassFinished`, which bubbles
to its screen. While it scores, the line gives the time left by the rule sampling's header
uses (`eta.PassEta`), once the first cells are done; `refresh_figures` counts it down.
`PassState` is what the screens that show the session while the pass goes on (Results)
learn of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import ProgressBar, Static

from persona_tui.run.events import OptionsFinished, OptionsProgress, OptionsStarted
from persona_tui.ui.eta import PassEta
from persona_tui.ui.text import duration, inert

OptionsEvent = OptionsStarted | OptionsProgress | OptionsFinished


@dataclass(frozen=True)
class PassState:
    """Where the option pass is: `done` of `total` cells saved, and whether it goes on."""

    done: int
    total: int
    running: bool


@dataclass
class OptionsPassFinished(Message):
    """The pass ended (bubbles from the panel to its screen, e.g. to allow a resume)."""

    event: OptionsFinished

    @property
    def complete(self) -> bool:
        return self.event.complete


class OptionsPassPanel(Vertical):
    """A line and a bar for the option pass; hidden until a pass starts."""

    DEFAULT_CSS = """
    OptionsPassPanel { height: auto; padding: 0 1; background: $panel; display: none; }
    OptionsPassPanel.-shown { display: block; }
    OptionsPassPanel > ProgressBar { width: 1fr; }
    OptionsPassPanel > ProgressBar > Bar { width: 1fr; }
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, id: str = "options-pass"
    ) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.eta = PassEta()
        self.state = "idle"  # scoring, complete, cancelled, skipped, failed
        self._cell = ""  # the cell scored last, "condition × probe"

    @property
    def done(self) -> int:
        return self.eta.done

    @property
    def total(self) -> int:
        return self.eta.total

    @property
    def pass_state(self) -> PassState:
        return PassState(self.done, self.total, self.state == "scoring")

    def compose(self) -> ComposeResult:
        yield Static("", classes="options-pass-status")
        yield ProgressBar(show_eta=False, classes="options-pass-bar")

    def show(self, event: OptionsEvent) -> None:
        """Draw what the option pass reports (on the UI thread)."""
        now = self.clock()
        if isinstance(event, OptionsStarted):
            self.add_class("-shown")
            self.eta.start(now, event.done, event.total)
            self.state, self._cell = "scoring", ""
            self.query_one(ProgressBar).display = True
            self.query_one(ProgressBar).update(total=event.total, progress=event.done)
            self.refresh_figures()
        elif isinstance(event, OptionsProgress):
            self.eta.total = event.total
            self.eta.finished(now, event.done)
            self._cell = f"{event.cell.arm.name} × {event.cell.probe}"
            self.query_one(ProgressBar).update(total=event.total, progress=event.done)
            self.refresh_figures()
        else:
            self.eta.stop(now)
            self._finished(event)
            self.post_message(OptionsPassFinished(event))

    def refresh_figures(self) -> None:
        """Redraw the line while the pass scores (on events, and each second for the clock)."""
        if self.state != "scoring":
            return
        left = self.eta.remaining(self.clock())
        text = Text(f"Scoring answer options: {self.done}/{self.total} cells · ")
        text.append(f"{duration(left)} left", "bold" if left is not None else "")
        if self._cell:
            text.append(" · ")
            text.append_text(inert(self._cell, "dim"))
        self._status(text)

    def _finished(self, event: OptionsFinished) -> None:
        self.add_class("-shown")
        summary = event.summary
        if summary is None:
            self.state = "failed" if event.failed else "skipped"
            self.query_one(ProgressBar).display = False
            self._status(inert(event.note, "italic"))
            return
        self.eta.done, self.eta.total = summary.done, summary.total
        self.query_one(ProgressBar).update(total=summary.total, progress=summary.done)
        if summary.complete:
            self.state = "complete"
            self._status(
                Text(f"Answer options scored: {summary.total}/{summary.total} cells · v: results")
            )
        else:
            self.state = "cancelled"
            self._status(
                Text(
                    f"Option pass stopped at {summary.done}/{summary.total} cells; "
                    "resuming the session scores the rest"
                )
            )

    def _status(self, text: Text) -> None:
        self.query_one(".options-pass-status", Static).update(text)
