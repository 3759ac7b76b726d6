"""The app's option pass: score a session's answer options once its sampling is done.

The run screen's worker calls `run_options_pass(...)` right after `Runner.run` returns
"complete", in the same thread (one thread drives llama.cpp), with the `OptionsPassPanel`
it composed. `score_options` is the same call `persona-tui run` makes; its progress
reaches the panel as messages (coalesced by a `bridge.CoalescingBridge` with
`progress_fold`: the latest cell, at most 20 messages a second) and the panel draws a bar.
A cancel (the run's own cancel event) stops between options and leaves the session
"interrupted", so resuming it scores the rest; a backend without log-probabilities is
told, not fatal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import ProgressBar, Static

from persona_tui.backends.base import Backend
from persona_tui.errors import PersonaError
from persona_tui.scenario.model import Scenario
from persona_tui.scoring.options import (
    OPTIONS_UNSUPPORTED,
    OptionsProgress,
    OptionsSummary,
    can_score_options,
    option_cells,
    score_options,
)
from persona_tui.session.store import SessionStore
from persona_tui.ui.bridge import CoalescingBridge, Latest
from persona_tui.ui.text import inert

FLUSH_INTERVAL = 0.05


@dataclass
class OptionsPassStarted(Message, bubble=False):
    done: int  # cells already in the session
    total: int


@dataclass
class OptionsPassProgress(Message, bubble=False):
    done: int
    total: int
    condition: str
    probe: str


@dataclass
class OptionsPassFinished(Message):
    """The pass ended; `summary` None when nothing was scored (`note` says why).

    Bubbles from the panel to its screen, which may handle it (e.g. to allow a resume).
    """

    summary: OptionsSummary | None
    note: str = ""

    @property
    def complete(self) -> bool:
        return self.summary is None or self.summary.complete


def run_options_pass(
    scenario: Scenario,
    backend: Backend,
    store: SessionStore,
    panel: OptionsPassPanel,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> OptionsSummary | None:
    """Score the session's options not yet scored (in the calling worker thread).

    Returns None when the plan has no options or the backend cannot score them (the panel
    says so). Engine failures propagate as PersonaError, like the runner's; cells scored
    before them stay saved.
    """
    cells = option_cells(scenario, store.session.header.plan)
    if not cells:
        return None
    if not can_score_options(backend):
        panel.post_message(OptionsPassFinished(None, f"options not scored: {OPTIONS_UNSUPPORTED}"))
        return None
    already = len(store.session.option_cells)
    panel.post_message(OptionsPassStarted(already, len(cells)))
    # Never flushed: a progress still held back when the pass stops is superseded by the
    # OptionsPassFinished that follows (it says where the pass stopped).
    progress = CoalescingBridge[OptionsProgress](
        panel.post_message, (progress_fold(),), clock=clock
    )
    try:
        summary = score_options(scenario, backend, store, progress, cancel)
    except PersonaError as error:
        panel.post_message(OptionsPassFinished(None, f"option pass failed: {error}"))
        _leave_resumable(store)
        raise
    if not summary.complete:
        _leave_resumable(store)  # the file says options are left, so Home offers resume
    panel.post_message(OptionsPassFinished(summary))
    return summary


def progress_fold(interval: float = FLUSH_INTERVAL) -> Latest[OptionsProgress]:
    """The pass's progress for a `CoalescingBridge`: the latest cell at most once per
    `interval` (20 messages a second by default), the last cell at once."""
    return Latest(
        OptionsProgress,
        interval,
        _progress_message,
        final=lambda update: update.done == update.total,
    )


def _progress_message(update: OptionsProgress) -> OptionsPassProgress:
    cell = update.cell
    return OptionsPassProgress(update.done, update.total, cell.condition, cell.probe)


def _leave_resumable(store: SessionStore) -> None:
    if store.session.header.status != "interrupted":
        store.set_status("interrupted")


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

    def on_options_pass_started(self, message: OptionsPassStarted) -> None:
        self.add_class("-shown")
        self.done, self.total, self.state = message.done, message.total, "scoring"
        self.query_one(ProgressBar).display = True
        self.query_one(ProgressBar).update(total=message.total, progress=message.done)
        self._status(Text(f"Scoring answer options: {self.done}/{self.total} cells"))

    def on_options_pass_progress(self, message: OptionsPassProgress) -> None:
        self.done, self.total = message.done, message.total
        self.query_one(ProgressBar).update(total=message.total, progress=message.done)
        text = Text(f"Scoring answer options: {self.done}/{self.total} cells · ")
        text.append_text(inert(f"{message.condition} × {message.probe}", "dim"))
        self._status(text)

    def on_options_pass_finished(self, message: OptionsPassFinished) -> None:
        self.add_class("-shown")
        summary = message.summary
        if summary is None:
            self.state = "failed" if message.note.startswith("option pass failed") else "skipped"
            self.query_one(ProgressBar).display = False
            self._status(inert(message.note, "italic"))
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
