"""The option pass on the Run screen: a line and a bar while a run scores answer options.

`run.finish.finish_run` scores the options after sampling, in the Run screen's worker,
and reports `OptionsStarted`, `OptionsProgress` and `OptionsFinished` through the run's
events; the screen hands them to `OptionsPassPanel.show`. A cancel leaves the session
"interrupted", so resuming it scores the rest; a backend without log-probabilities is
told, not fatal. When the pass ends the panel posts `OptionsPassFinished`, which bubbles
to its screen.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import ProgressBar, Static

from persona_tui.run.events import OptionsFinished, OptionsProgress, OptionsStarted
from persona_tui.ui.text import inert

OptionsEvent = OptionsStarted | OptionsProgress | OptionsFinished


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

    def __init__(self, *, id: str = "options-pass") -> None:
        super().__init__(id=id)
        self.done = 0
        self.total = 0
        self.state = "idle"  # scoring, complete, cancelled, skipped, failed

    def compose(self) -> ComposeResult:
        yield Static("", classes="options-pass-status")
        yield ProgressBar(show_eta=False, classes="options-pass-bar")

    def show(self, event: OptionsEvent) -> None:
        """Draw what the option pass reports (on the UI thread)."""
        if isinstance(event, OptionsStarted):
            self.add_class("-shown")
            self.done, self.total, self.state = event.done, event.total, "scoring"
            self.query_one(ProgressBar).display = True
            self.query_one(ProgressBar).update(total=event.total, progress=event.done)
            self._status(Text(f"Scoring answer options: {self.done}/{self.total} cells"))
        elif isinstance(event, OptionsProgress):
            self.done, self.total = event.done, event.total
            self.query_one(ProgressBar).update(total=event.total, progress=event.done)
            text = Text(f"Scoring answer options: {self.done}/{self.total} cells · ")
            text.append_text(inert(f"{event.cell.condition} × {event.cell.probe}", "dim"))
            self._status(text)
        else:
            self._finished(event)
            self.post_message(OptionsPassFinished(event))

    def _finished(self, event: OptionsFinished) -> None:
        self.add_class("-shown")
        summary = event.summary
        if summary is None:
            self.state = "failed" if event.failed else "skipped"
            self.query_one(ProgressBar).display = False
            self._status(inert(event.note, "italic"))
            return
        self.done, self.total = summary.done, summary.total
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
