"""The session browser: every session with filters; open, resume, delete, show the record."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import getters, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from persona_tui.errors import PersonaError
from persona_tui.session.index import (
    SessionSummary,
    delete_session,
    list_sessions,
    reproducibility_record,
)
from persona_tui.ui.app_base import PersonaAppBase
from persona_tui.ui.screens.dialogs import ConfirmDialog, InfoDialog, TextPrompt
from persona_tui.ui.text import inert

STATUS_FILTERS = ("all", "running", "interrupted", "complete")
STATUS_STYLE = {"complete": "green", "interrupted": "yellow", "running": "cyan"}


class SessionTable(DataTable[Text]):
    """A table of session summaries; `selected` is the summary under the cursor."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.summaries: list[SessionSummary] = []

    def on_mount(self) -> None:
        self.add_columns("status", "scenario", "trials", "annotated", "model", "created")

    def show(self, summaries: list[SessionSummary]) -> None:
        self.summaries = summaries
        self.clear()
        for s in summaries:
            if s.error:
                self.add_row(
                    Text("unreadable", "red"),
                    inert(s.path.name),
                    Text(""),
                    Text(""),
                    Text(""),
                    inert(s.error[:60]),
                )
                continue
            self.add_row(
                Text(s.status, STATUS_STYLE.get(s.status, "")),
                inert(s.scenario),
                Text(s.progress, justify="right"),
                Text(str(s.annotated), justify="right"),
                inert(s.model),
                Text(s.created[:16].replace("T", " ")),
            )

    @property
    def selected(self) -> SessionSummary | None:
        if not self.summaries or not 0 <= self.cursor_row < len(self.summaries):
            return None
        return self.summaries[self.cursor_row]


class SessionBrowser(Screen[None]):
    """All sessions; `f` cycles the status filter, `/` filters by text."""

    app = getters.app(PersonaAppBase)
    CSS_PATH = "sessions.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,a", "annotate(False)", "Annotate", key_display="a"),
        Binding("b", "annotate(True)", "Blind"),
        Binding("r", "resume", "Resume"),
        Binding("c", "compare", "Compare"),
        Binding("v", "results(False)", "Results"),
        Binding("V", "results(True)", "Results of scenario", show=False),
        Binding("i", "info", "Record"),
        Binding("d", "delete", "Delete"),
        Binding("f", "cycle_filter", "Filter"),
        Binding("slash", "text_filter", "Find", key_display="/"),
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.all: list[SessionSummary] = []
        self.status_filter = "all"
        self.text_filter = ""

    def compose(self) -> ComposeResult:
        yield Static("", id="browser-bar")
        yield SessionTable(id="browser-table")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._update_bar()
        self.query_one(SessionTable).focus()
        self._load()

    def on_screen_resume(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="sessions")
    def _load(self) -> None:
        summaries = list_sessions()
        self.app.call_from_thread(self._loaded, summaries)

    def _loaded(self, summaries: list[SessionSummary]) -> None:
        self.all = summaries
        self._apply()

    def _apply(self) -> None:
        wanted = [
            s
            for s in self.all
            if (self.status_filter == "all" or s.status == self.status_filter)
            and self.text_filter.lower() in f"{s.id} {s.scenario} {s.model}".lower()
        ]
        self.query_one(SessionTable).show(wanted)
        self._update_bar(len(wanted))

    def _update_bar(self, shown: int | None = None) -> None:
        text = Text("Sessions", style="bold")
        text.append(f"  status: {self.status_filter}")
        if self.text_filter:
            text.append("  text: ")
            text.append_text(inert(self.text_filter))
        if shown is not None:
            text.append(f"  · {shown} of {len(self.all)}", style="dim")
        self.query_one("#browser-bar", Static).update(text)

    def _selected(self) -> SessionSummary | None:
        summary = self.query_one(SessionTable).selected
        return summary if summary is not None and not summary.error else None

    def action_cycle_filter(self) -> None:
        index = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(index + 1) % len(STATUS_FILTERS)]
        self._apply()

    def action_text_filter(self) -> None:
        def chosen(text: str | None) -> None:
            if text is not None:
                self.text_filter = text.strip()
                self._apply()

        self.app.push_screen(TextPrompt("Show sessions containing", self.text_filter), chosen)

    def action_annotate(self, blind: bool) -> None:
        summary = self._selected()
        if summary is not None:
            self.app.open_annotation(summary.path, blind=blind)

    def action_resume(self) -> None:
        summary = self._selected()
        if summary is None:
            return
        if summary.status == "complete":
            self.notify("this session is complete; nothing to resume")
            return
        self.app.start_run(None, None, resume=summary.path)

    def action_compare(self) -> None:
        from persona_tui.ui.screens.compare import open_compare

        summary = self._selected()
        if summary is not None:
            open_compare(self, summary.path)

    def action_results(self, whole_scenario: bool) -> None:
        """Results of the selected session, or of every listed session of its scenario."""
        from persona_tui.ui.screens.results import ResultsScreen

        summary = self._selected()
        if summary is None:
            return
        if not whole_scenario:
            self.app.push_screen(ResultsScreen([summary.path]))
            return
        listed = self.query_one(SessionTable).summaries
        paths = sorted(s.path for s in listed if not s.error and s.scenario == summary.scenario)
        title = f"{summary.scenario} · {len(paths)} sessions"
        self.app.push_screen(ResultsScreen(paths, title))

    def action_info(self) -> None:
        from persona_tui.session.store import load_session

        summary = self._selected()
        if summary is None:
            return
        try:
            session = load_session(summary.path)
        except PersonaError as error:
            self.notify(str(error), severity="error")
            return
        record = inert(reproducibility_record(session))
        self.app.push_screen(InfoDialog("Reproducibility record", record))

    def action_delete(self) -> None:
        summary = self.query_one(SessionTable).selected
        if summary is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._delete(summary)

        self.app.push_screen(
            ConfirmDialog("Delete this session?", f"{summary.path}\n\nThis cannot be undone."),
            confirmed,
        )

    def _delete(self, summary: SessionSummary) -> None:
        try:
            delete_session(summary.path)  # refuses while another process writes or judges it
        except PersonaError as error:
            self.notify(str(error), title="Not deleted", severity="error")
            return
        self.notify(f"deleted {summary.path.name}")
        self._load()

    def action_back(self) -> None:
        self.dismiss()
