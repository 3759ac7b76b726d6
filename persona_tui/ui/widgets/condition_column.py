"""One condition's column on the Run screen: its framing, the current probe, the responses.

A column streams every trial of its condition that is in flight: one `StreamView` pane per
trial (batched decoding runs several samples of a cell at once). With one pane the column
looks as it always did; with several, each pane is titled with its sample and state. Panes
are reused for the next trials, so starting a trial mounts a widget only when more run at
once than ever before in this column.

A trial's start and end lay nothing out and restyle nothing while one stream runs: the
probe line has a fixed height (a new probe repaints it), and the column's `-active` mark
moves only when the run moves to another column (the Run screen's `_mark_active`). A screen
layout costs the UI thread tens of milliseconds, and on two cores every one of them is
taken from generation (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from persona_tui.scenario.model import Condition, Scenario
from persona_tui.session.model import Arm, Trial
from persona_tui.ui.text import inert, one_line
from persona_tui.ui.widgets.stream_view import StreamView


def framing_summary(condition: Condition) -> str:
    """A line saying what the framing is: its note, else its system text, plus demo count."""
    summary = one_line(condition.note) or one_line(condition.system) or "no system text"
    if condition.shots:
        summary += f" · {len(condition.shots)} demo{'s' if len(condition.shots) != 1 else ''}"
    return summary


TrialId = tuple[str, int]  # (probe, sample) within a condition


class ProbeLine(Widget):
    """The probe being asked, in a fixed number of rows, cut with "…" when it is longer.

    Its height never changes, so showing the next probe repaints these rows and nothing
    else: no screen layout, and the panes below never move.
    """

    def __init__(self, text: Text, classes: str) -> None:
        super().__init__(classes=classes)
        self._text = text

    @property
    def text(self) -> Text:
        """The whole line (before it is cut to the rows there are)."""
        return self._text

    def show(self, text: Text) -> None:
        self._text = text
        self.refresh()

    def render(self) -> Text:
        width, rows = self.content_size
        if width <= 0 or rows <= 0:
            return Text()
        lines = list(self._text.wrap(self.app.console, width))
        if len(lines) > rows:
            lines = lines[:rows]
            last = lines[-1]
            last.rstrip()
            last.truncate(width - 1)
            last.append("…")
        return Text("\n").join(lines)


class ResponsePane(StreamView):
    """One trial's streamed response inside a column; titled when the column shows several."""

    def __init__(self) -> None:
        super().__init__(classes="column-response")
        self.trial: TrialId | None = None
        self.turn = 0
        self.group = 0  # the column's trial group this pane was last started in
        self.state = ""  # what its title says of the trial (generating…, finished, …)

    def label(self, scenario: Scenario, state: str, shown_probe: str) -> None:
        """Title the pane with its sample (and probe, unless the column's probe line names it)."""
        self.state = state
        if self.trial is None:
            return
        probe_id, sample = self.trial
        title = f"#{sample + 1}" if probe_id == shown_probe else f"{probe_id} #{sample + 1}"
        turns = len(scenario.probe(probe_id).turns)
        if turns > 1:
            title += f" (turn {self.turn + 1}/{turns})"
        self.border_title = inert(f"{title} · {state}")


class ConditionColumn(Vertical):
    """Streams the responses of the trials running under one condition."""

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
    ConditionColumn > .column-probe { color: $accent; height: 3; margin-top: 1; }
    ConditionColumn > .column-body { height: 1fr; scrollbar-size-vertical: 1; }
    ConditionColumn > .column-status { color: $text-muted; height: 1; }
    ConditionColumn.-several ResponsePane {
        min-height: 3;
        scrollbar-size-vertical: 0;  /* a bar on two rows says little and costs a layer */
        border-top: solid $panel;
        border-title-color: $text-muted;
        border-title-align: left;
    }
    ConditionColumn.-several ResponsePane.-active { border-top: solid $primary; }
    """

    def __init__(
        self,
        scenario: Scenario,
        condition: Condition,
        planned: int,
        panes: int = 1,
        replicate: int = 0,
    ) -> None:
        """`panes`: the trials the run decodes at once (the plan's batch), each shown in a
        pane made now: mounting panes while the run streams would lay the screen out
        again, a burst of UI-thread work that slows generation on two cores. `replicate`:
        the training run of a replicated study this column shows (0: none)."""
        super().__init__(
            id=f"column-{condition.id}" + (f"-r{replicate}" if replicate else ""),
            classes="condition-column" + (" -several" if panes > 1 else ""),
        )
        self.replicate = replicate
        self._pane_count = max(1, panes)
        self.scenario = scenario
        self.condition = condition
        self.planned = planned
        self.done = 0
        self._panes: list[ResponsePane] = []
        self._in_flight: dict[TrialId, ResponsePane] = {}
        self._group = 0  # counts the groups of trials (a new one when none is in flight)
        self._tidy = False  # panes of an earlier group may still need hiding
        self._probe_shown = ""  # the probe named in the probe line

    def compose(self) -> ComposeResult:
        title = self.condition.label or self.condition.id
        if self.replicate:
            title += f" · run {self.replicate}"
        yield Static(inert(title), classes="column-title")
        yield Static(inert(framing_summary(self.condition)), classes="column-framing")
        yield ProbeLine(Text("waiting", style="italic"), classes="column-probe")
        with VerticalScroll(classes="column-body", can_focus=False):
            for _ in range(self._pane_count):
                pane = ResponsePane()
                self._panes.append(pane)
                yield pane
        yield Static(self._status_text("waiting"), classes="column-status")

    @property
    def panes(self) -> list[ResponsePane]:
        """The panes shown (one per trial of the latest group)."""
        return [pane for pane in self._panes if pane.display]

    @property
    def in_flight(self) -> int:
        """How many of this condition's trials are in flight."""
        return len(self._in_flight)

    def _status_text(self, state: str) -> Text:
        return Text(f"{self.done}/{self.planned} done · {state}")

    def _set_status(self, state: str | None = None) -> None:
        if state is None:
            n = len(self._in_flight)
            state = "generating…" if n == 1 else f"{n} generating…" if n else "waiting"
        # One row, however long the text: no screen layout for it (the run updates it often).
        self.query_one(".column-status", Static).update(self._status_text(state), layout=False)

    def _label(self, pane: ResponsePane, state: str) -> None:
        pane.label(self.scenario, state, self._probe_shown)

    def _show_probe(self, probe_id: str, sample: int, turn: int) -> None:
        if probe_id != self._probe_shown:
            # Panes of the probe named before now need their probe in the title (and
            # those of the new one no longer do): samples of two probes share the column
            # when one's sequence takes the place of the other's (batched decoding).
            self._probe_shown = probe_id
            for pane in self.panes:
                if pane.trial is not None and pane.state:
                    self._label(pane, pane.state)
        probe = self.scenario.probe(probe_id)
        samples = [s for p, s in self._in_flight if p == probe_id]
        several = len(samples) > 1
        prefix = f"{probe_id} ×{len(samples)}" if several else f"{probe_id} #{sample + 1}"
        if len(probe.turns) > 1:
            prefix += f" (turn {turn + 1}/{len(probe.turns)})"
        line = Text(prefix + ": ", style="bold")
        line.append_text(inert(probe.turns[turn]))
        self.query_one(ProbeLine).show(line)

    def _free_pane(self) -> ResponsePane:
        """A pane not in flight (the first one), or a new one."""
        busy = set(map(id, self._in_flight.values()))
        for pane in self._panes:
            if id(pane) not in busy:
                return pane
        pane = ResponsePane()
        self._panes.append(pane)
        self.query_one(".column-body", VerticalScroll).mount(pane)
        return pane

    def _arrange(self) -> None:
        """Hide the panes of an earlier group that this group did not reuse (once a group)."""
        if not self._tidy:
            return
        self._tidy = False
        for pane in self._panes:
            if pane.group != self._group and pane.display:
                pane.display = False
        self._mark_panes()

    def _mark_panes(self) -> None:
        """`-several` on the column when it shows several panes, and then `-active` on the
        panes in flight. With one pane neither is styled, so nothing is restyled per trial."""
        shown = self.panes
        several = len(shown) > 1
        self.set_class(several, "-several")
        if several:
            busy = set(map(id, self._in_flight.values()))
            for pane in shown:
                pane.set_class(id(pane) in busy, "-active")

    def start_trial(self, probe_id: str, sample: int) -> None:
        """A trial of this condition begins: give it a cleared pane and show its probe."""
        if not self._in_flight:
            self._group += 1
        pane = self._free_pane()
        pane.trial, pane.turn, pane.group = (probe_id, sample), 0, self._group
        self._in_flight[(probe_id, sample)] = pane
        pane.clear()
        if not pane.display:  # setting it again would lay the screen out
            pane.display = True
        self._show_probe(probe_id, sample, 0)
        self._label(pane, "generating…")
        self._tidy = True
        self._mark_panes()
        self.add_class("-active")
        self._set_status()

    def append_text(self, probe_id: str, sample: int, turn: int, text: str) -> None:
        """Add a batch of a trial's generated text (inert) to its pane."""
        pane = self._in_flight.get((probe_id, sample))
        if pane is None:
            self.start_trial(probe_id, sample)
            pane = self._in_flight[(probe_id, sample)]
        self._arrange()
        if turn != pane.turn:
            pane.turn = turn
            pane.clear()
            self._show_probe(probe_id, sample, turn)
            self._label(pane, "generating…")
        pane.append(text)

    def _settle(self, probe_id: str, sample: int) -> ResponsePane:
        """The pane of a trial that ended (its own, or a free one), no longer in flight."""
        pane = self._in_flight.pop((probe_id, sample), None)
        if pane is None:
            pane = self._free_pane()
            pane.trial, pane.turn, pane.group = (probe_id, sample), 0, self._group
            if not pane.display:  # setting it again would lay the screen out
                pane.display = True
        self._arrange()
        self._mark_panes()
        return pane

    def finish_trial(self, probe_id: str, sample: int, response: str, finish_reason: str) -> None:
        """The trial finished: its pane shows the stored response exactly as saved (inert)."""
        self.done += 1
        pane = self._settle(probe_id, sample)
        pane.set_text(response)
        state = f"finished ({finish_reason})"
        self._label(pane, state)
        self._set_status(state if not self._in_flight else None)

    def restore(self, probe_id: str, sample: int, response: str, done: int) -> None:
        """Show a trial finished before this run (on resume), with `done` trials finished."""
        self.done += done
        pane = self._settle(probe_id, sample)
        pane.set_text(response)
        self._label(pane, "finished")
        self._set_status("finished")

    def fail_trial(self, probe_id: str, sample: int, error: str) -> None:
        pane = self._settle(probe_id, sample)
        pane.end()
        self._label(pane, "failed")
        self._set_status(f"failed: {one_line(error, 60)}" if not self._in_flight else None)

    def stop(self, state: str) -> None:
        """The run stopped (cancelled, complete): trials still in flight end as `state`."""
        if self._in_flight:
            for pane in self._in_flight.values():
                pane.end()
                self._label(pane, state)
            self._in_flight.clear()
            self._mark_panes()
            self._set_status(state)
        self.remove_class("-active")


def restore_columns(columns: Mapping[Arm, ConditionColumn], finished: Sequence[Trial]) -> None:
    """Show in each arm's column its last trial finished before this run (on resume), and
    count them all."""
    last: dict[Arm, Trial] = {}
    done: dict[Arm, int] = {}
    for trial in finished:
        last[trial.arm] = trial
        done[trial.arm] = done.get(trial.arm, 0) + 1
    for arm, trial in last.items():
        column = columns.get(arm)
        if column is not None:
            column.restore(trial.probe, trial.sample, trial.response, done[arm])
