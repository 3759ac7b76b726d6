"""One condition's column on the Run screen: its framing, the current probe, the response."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from persona_tui.scenario.model import Condition, Scenario
from persona_tui.ui.text import inert, one_line


def framing_summary(condition: Condition) -> str:
    """A line saying what the framing is: its note, else its system text, plus demo count."""
    summary = one_line(condition.note) or one_line(condition.system) or "no system text"
    if condition.shots:
        summary += f" · {len(condition.shots)} demo{'s' if len(condition.shots) != 1 else ''}"
    return summary


def _update_in_place(static: Static, content: Text) -> bool:
    """Show `content` in `static`, re-laying out the screen only if its wrapped height changed.

    A layout pass re-arranges and re-composites the whole screen; done for every streamed
    batch it takes CPU that generation needs. While the text still fits in the lines the
    widget already has, a repaint of the widget alone shows the same thing. Returns whether
    a layout was requested (the height changed, or the widget has not been laid out yet).
    """
    static.update(content, layout=False)
    size = static.content_size
    if size.width > 0:
        height = static.get_content_height(static.container_size, static.app.size, size.width)
        if height == size.height:
            return False
    static.refresh(layout=True)
    return True


class ConditionColumn(Vertical):
    """Streams the response of the trial currently running under one condition."""

    DEFAULT_CSS = """
    ConditionColumn {
        width: 1fr;
        min-width: 38;
        height: 1fr;
        border: round $panel;
        padding: 0 1;
    }
    ConditionColumn.-active { border: round $primary; }
    ConditionColumn > .column-title { text-style: bold; color: $text; }
    ConditionColumn > .column-framing { color: $text-muted; height: 2; }
    ConditionColumn > .column-probe { color: $accent; max-height: 4; margin-top: 1; }
    ConditionColumn > .column-body { height: 1fr; scrollbar-size-vertical: 1; }
    ConditionColumn > .column-status { color: $text-muted; }
    """

    def __init__(self, scenario: Scenario, condition: Condition, planned: int) -> None:
        super().__init__(id=f"column-{condition.id}", classes="condition-column")
        self.scenario = scenario
        self.condition = condition
        self.planned = planned
        self.done = 0
        self._parts: list[str] = []
        self._turn = 0

    def compose(self) -> ComposeResult:
        yield Static(inert(self.condition.label or self.condition.id), classes="column-title")
        yield Static(inert(framing_summary(self.condition)), classes="column-framing")
        yield Static(Text("waiting", style="italic"), classes="column-probe")
        with VerticalScroll(classes="column-body"):
            yield Static("", classes="column-response")
        yield Static(self._status_text("waiting"), classes="column-status")

    def _status_text(self, state: str) -> Text:
        return Text(f"{self.done}/{self.planned} done · {state}")

    def _set_status(self, state: str) -> None:
        self.query_one(".column-status", Static).update(self._status_text(state))

    def _show_probe(self, probe_id: str, sample: int, turn: int) -> None:
        probe = self.scenario.probe(probe_id)
        prefix = f"{probe_id} #{sample + 1}"
        if len(probe.turns) > 1:
            prefix += f" (turn {turn + 1}/{len(probe.turns)})"
        line = Text(prefix + ": ", style="bold")
        line.append_text(inert(probe.turns[turn]))
        self.query_one(".column-probe", Static).update(line)

    def start_trial(self, probe_id: str, sample: int) -> None:
        """A trial of this condition begins: show its probe and clear the response."""
        self._parts.clear()
        self._turn = 0
        self._show_probe(probe_id, sample, 0)
        self.query_one(".column-response", Static).update("")
        self.add_class("-active")
        self._set_status("generating…")

    def append_text(self, probe_id: str, sample: int, turn: int, text: str) -> None:
        """Add a batch of generated text (inert) and keep the end in view."""
        if turn != self._turn:
            self._turn = turn
            self._parts.clear()
            self._show_probe(probe_id, sample, turn)
        self._parts.append(text)
        body = self.query_one(".column-body", VerticalScroll)
        follow = body.scroll_y >= body.max_scroll_y - 1
        response = self.query_one(".column-response", Static)
        if _update_in_place(response, inert("".join(self._parts))) and follow:
            body.scroll_end(animate=False, immediate=False)

    def finish_trial(self, response: str, finish_reason: str) -> None:
        """The trial finished: show the stored response exactly as saved (inert)."""
        self.done += 1
        self._parts = [response]
        self.query_one(".column-response", Static).update(inert(response))
        self.remove_class("-active")
        self._set_status(f"finished ({finish_reason})")

    def fail_trial(self, error: str) -> None:
        self.remove_class("-active")
        self._set_status(f"failed: {one_line(error, 60)}")

    def stop(self, state: str) -> None:
        """The run stopped (cancelled, paused, complete): say so unless a trial is shown done."""
        self.remove_class("-active")
        self._set_status(state)
