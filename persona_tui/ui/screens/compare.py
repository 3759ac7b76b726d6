"""The Compare screen: one probe, every condition side by side with all its samples."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from persona_tui.errors import PersonaError
from persona_tui.scenario.model import Scenario
from persona_tui.session.as_run import scenario_as_run
from persona_tui.session.model import Session
from persona_tui.session.store import load_session
from persona_tui.ui.text import inert
from persona_tui.ui.widgets.condition_column import framing_summary
from persona_tui.ui.widgets.side_by_side import SideBySide


class CompareScreen(Screen[None]):
    """Read how the framings differ on the same question; `n`/`p` change the probe."""

    CSS_PATH = "compare.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n,right_square_bracket", "probe(1)", "Next probe", key_display="n"),
        Binding("p,left_square_bracket", "probe(-1)", "Prev probe", key_display="p"),
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(self, session: Session, scenario: Scenario, probe: str | None = None) -> None:
        super().__init__()
        self.session = session
        self.scenario = scenario
        plan = session.header.plan
        self.probes = [p for p in plan.probes if any(t.probe == p for t in session.trials)]
        self.index = self.probes.index(probe) if probe in self.probes else 0

    def compose(self) -> ComposeResult:
        yield Static("", id="compare-probe")
        yield SideBySide(id="compare-columns")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.show_probe()

    def show_probe(self) -> None:
        """Rebuild the columns for the current probe."""
        probe_text = Text()
        if not self.probes:
            probe_text.append("no finished trials to compare yet")
        else:
            probe_id = self.probes[self.index]
            probe_text.append(f"probe {self.index + 1}/{len(self.probes)} · {probe_id}: ", "bold")
            probe_text.append_text(inert(self.scenario.probe(probe_id).text))
        self.query_one("#compare-probe", Static).update(probe_text)
        columns = self.query_one("#compare-columns", SideBySide)
        columns.remove_children()
        if self.probes:
            columns.mount_all(self._column(c) for c in self.session.header.plan.conditions)
            self.call_after_refresh(columns.fit)

    def _column(self, condition_id: str) -> Vertical:
        condition = self.scenario.condition(condition_id)
        probe_id = self.probes[self.index]
        trials = sorted(
            (t for t in self.session.trials if t.condition == condition_id and t.probe == probe_id),
            key=lambda t: (t.replicate, t.sample),
        )
        body = Text()
        for trial in trials:  # a replicated condition's training runs one after another
            run = f" run {trial.replicate}" if trial.replicate else ""
            body.append(f"#{trial.sample + 1}{run} ", style="bold reverse")
            body.append(f" {trial.completion_tokens} tokens · {trial.finish_reason}\n", "dim")
            body.append_text(inert(trial.response.strip()))
            body.append("\n\n")
        if not trials:
            body.append("no finished sample", style="italic")
        return Vertical(
            Static(inert(condition.label or condition.id), classes="compare-title"),
            Static(inert(framing_summary(condition)), classes="compare-framing"),
            VerticalScroll(Static(body), classes="compare-body"),
            classes="compare-column",
        )

    def action_probe(self, step: int) -> None:
        if self.probes:
            self.index = (self.index + step) % len(self.probes)
            self.show_probe()

    def action_back(self) -> None:
        self.dismiss()


def open_compare(screen: Screen[None], path: Path) -> None:
    """Open the Compare screen on a session file (read only, no lock)."""
    try:
        session = load_session(path)
        scenario = scenario_as_run(session)
    except PersonaError as error:
        screen.notify(str(error), title="Cannot open the session", severity="error")
        return
    screen.app.push_screen(CompareScreen(session, scenario))
