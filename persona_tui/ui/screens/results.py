"""The Results screen: label rates, framing contrasts and a terminal chart of sessions.

The numbers come from the analysis core (`persona_tui.analysis.results.results_view`), the
same report `persona-tui report` prints. Sessions with scored answer options (likelihood
probes) get a section of their own: log-odds by condition, the contrasts with their
verdicts, the power line and a chart; without options it stays hidden. Sessions with trait
projections get theirs (per trait: conditions, contrasts, agreement with the behavioural
measures; shown even before any trial is labelled). It blocks
(reading sessions, statistics), so it runs in a thread worker while the screen shows a
loading state; what a user can fix (no labels yet, the `analysis` extra missing) comes
back as a message shown on the screen.
Opened while a run's option pass goes on (`live`: the Run screen's signal and where the pass
is), it says how far the pass is and computes again as cells are saved: at most once every
`LIVE_REFRESH` seconds, one computation at a time, without the loading overlay (the figures
change in place, no flicker), and once more when the pass ends.
Everything shown is inert text: condition labels come from scenario files.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, TypeVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import ScrollableContainer
from textual.screen import Screen
from textual.signal import Signal
from textual.timer import Timer
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from persona_tui.analysis.labels import SOURCES, Source
from persona_tui.analysis.results import ResultsView
from persona_tui.analysis.summary import Analysis, Contrast
from persona_tui.ui.options_pass import PassState
from persona_tui.ui.screens.results_options import options_text
from persona_tui.ui.screens.results_projections import projections_text
from persona_tui.ui.text import inert

INSTALL_COMMAND = "pip install 'persona-tui[analysis]'"
VERDICT_STYLE = {"difference": "bold", "too few": "italic", "no clear difference": ""}
T = TypeVar("T")
# While an option pass saves cells: seconds between two computations of the results (each
# reads the session and bootstraps, on the CPU the pass is using).
LIVE_REFRESH = 2.0


@dataclass(frozen=True)
class ResultsQuery:
    """What to compute: where labels come from, the reference condition, the compared label."""

    source: Source = "human"
    reference: str | None = None  # None: the first condition
    label: str | None = None  # None: the first "bad" label of the schema
    width: int = 74  # of the terminal chart
    height: int = 16


def compute_results(paths: Sequence[Path], query: ResultsQuery) -> ResultsView:
    """`results_view` for `query`; never raises (a missing extra or a bug becomes a message)."""
    try:
        from persona_tui.analysis.results import results_view

        return results_view(
            paths,
            width=query.width,
            height=query.height,
            source=query.source,
            reference=query.reference,
            label=query.label,
            color=False,
        )
    except ImportError as error:
        return ResultsView(None, "", "", f"{error}: install with {INSTALL_COMMAND}")
    except Exception as error:  # a bug: shown on the screen instead of a crash
        return ResultsView(
            None, "", "", f"the report could not be computed: {type(error).__name__}: {error}"
        )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _pp(value: float) -> str:
    return f"{value * 100:+.1f}"


def summary_text(analysis: Analysis) -> Text:
    """The results at a glance: the compared label's rate per condition, then each verdict."""
    label = analysis.contrast_label
    text = Text()
    if label is None:
        text.append("No labels to compare: the annotation schema defines none.\n", "italic")
        return text
    text.append("Rate of ", "bold")
    text.append_text(inert(f"'{label}'", "bold"))
    text.append(" by condition (95% Wilson interval)\n", "bold")
    width = max(len(c.id) for c in analysis.conditions)
    for condition in analysis.conditions:
        rate = analysis.rate(condition.id, label)
        text.append("  ")
        text.append_text(inert(condition.id.ljust(width), "bold"))
        if rate is None or not rate.n:
            text.append("  no labelled trials")
        else:
            interval = rate.interval
            bounds = "" if interval is None else f" [{_pct(interval.low)}, {_pct(interval.high)}]"
            text.append(f"  {rate.k:>3}/{rate.n:<3} {_pct(rate.rate):>6}{bounds}")
        if condition.label and condition.label != condition.id:
            text.append("  ")
            text.append_text(inert(condition.label, "dim"))
        text.append("\n")
    if analysis.contrasts:
        text.append("\nAgainst the reference ", "bold")
        text.append_text(inert(f"'{analysis.reference}'", "bold"))
        text.append(" (95% probe bootstrap interval, Fisher p)\n", "bold")
        for contrast in analysis.contrasts:
            text.append_text(contrast_line(contrast))
    for note in analysis.notes:
        text.append("\nnote: ", "italic")
        text.append_text(inert(note, "italic"))
    return text


def contrast_line(contrast: Contrast) -> Text:
    """`framed: +75.0 pp [+50.0, +95.0], p < 0.001 → difference` and its explanation."""
    text = Text("  ")
    text.append_text(inert(contrast.condition, "bold"))
    difference = contrast.difference
    text.append(": " + ("—" if difference is None else f"{_pp(difference)} pp"))
    if contrast.bootstrap is not None:
        text.append(f" [{_pp(contrast.bootstrap.low)}, {_pp(contrast.bootstrap.high)}]")
    p = contrast.p_value
    if p is not None:
        text.append(", p < 0.001" if p < 0.001 else f", p = {p:.3f}")
    text.append(" → ")
    text.append(contrast.verdict, VERDICT_STYLE.get(contrast.verdict, ""))
    text.append("\n    ")
    text.append_text(inert(contrast.explanation, "dim"))
    text.append("\n")
    return text


class ResultsScreen(Screen[None]):
    """Rates, contrasts with plain verdicts, and a chart; keys choose what to compare."""

    CSS_PATH = "results.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cycle_reference(1)", "Reference"),
        Binding("C", "cycle_reference(-1)", "Prev reference", show=False),
        Binding("l", "cycle_label(1)", "Label"),
        Binding("L", "cycle_label(-1)", "Prev label", show=False),
        Binding("s", "cycle_source", "Source"),
        Binding("r", "recompute", "Recompute"),
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(
        self,
        paths: Sequence[Path],
        title: str = "",
        *,
        live: tuple[Signal[PassState], PassState] | None = None,
    ) -> None:
        super().__init__()
        self.paths = tuple(paths)
        self.title_text = title or (
            self.paths[0].stem if len(self.paths) == 1 else f"{len(self.paths)} sessions"
        )
        self.query_state = ResultsQuery()
        self.view: ResultsView | None = None
        self.computing = False
        self.conditions: tuple[str, ...] = ()  # from the last successful analysis
        self.labels: tuple[str, ...] = ()
        self._generation = 0
        self._resize_timer: Timer | None = None
        # The option pass going on in the session (None: the sessions are not being run).
        self._live_signal = live[0] if live is not None else None
        self.pass_state: PassState | None = live[1] if live is not None else None
        self._stale = False  # cells were saved since the last computation started
        self._computed_at = 0.0  # when the last computation started (time.monotonic)
        self._live_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="results-bar")
        with ScrollableContainer(id="results-body"):
            yield Static("", id="results-summary")
            yield Static("", id="results-options")
            yield Static("", id="results-options-chart")
            yield Static("", id="results-projections")
            yield Static("", id="results-chart")
            yield Static("", id="results-report")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#results-body").focus()
        if self._live_signal is not None:
            self._live_signal.subscribe(self, self._cells_saved)
        self._update_bar()
        # After the first layout, so the chart fits the screen's actual width.
        self.call_after_refresh(self._first_compute)

    def _first_compute(self) -> None:
        if not self._generation:
            self.action_recompute()

    # Computing --------------------------------------------------------------------------

    def _chart_size(self) -> tuple[int, int]:
        width, height = self.size.width or 80, self.size.height or 24
        return max(40, width - 6), max(10, min(20, height - 10))

    def action_recompute(self) -> None:
        """Compute the report again (the session files may have changed)."""
        self._start_compute(quiet=False)

    def _start_compute(self, *, quiet: bool) -> None:
        """Compute in a worker; `quiet` keeps what is shown until the new figures replace it."""
        width, height = self._chart_size()
        self.query_state = replace(self.query_state, width=width, height=height)
        self._generation += 1
        self.computing = True
        self._stale = False
        self._computed_at = time.monotonic()
        if not quiet:
            self.query_one("#results-body").loading = True
            self._update_bar()
        self._compute(self._generation, self.query_state)

    # Following an option pass --------------------------------------------------------

    def _cells_saved(self, state: PassState) -> None:
        """The Run screen saved a cell (or the pass ended): compute again, throttled."""
        self.pass_state = state
        self._stale = True
        self._update_bar()
        self._refresh_soon()

    def _refresh_soon(self) -> None:
        if not self._stale or self.computing or self._live_timer is not None:
            return  # nothing new, or a computation runs (it calls again when it ends)
        wait = max(0.0, self._computed_at + LIVE_REFRESH - time.monotonic())
        self._live_timer = self.set_timer(wait, self._live_refresh)

    def _live_refresh(self) -> None:
        self._live_timer = None
        if self.computing:
            return
        self._start_compute(quiet=True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="results")
    def _compute(self, generation: int, query: ResultsQuery) -> None:
        view = compute_results(self.paths, query)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show, generation, view)

    def _show(self, generation: int, view: ResultsView) -> None:
        if generation != self._generation or not self.is_attached:
            return  # a newer computation is on its way, or the screen is gone
        self.computing = False
        self.view = view
        analysis = view.analysis
        if analysis is not None:
            self.conditions = tuple(c.id for c in analysis.conditions)
            self.labels = analysis.labels
        self.query_one("#results-body").loading = False
        summary = self.query_one("#results-summary", Static)
        if analysis is None:
            summary.update(self._message_text(view.message))
        else:
            summary.update(summary_text(analysis))
        chart = inert(view.chart)
        chart.no_wrap = True
        self.query_one("#results-chart", Static).update(chart)
        report = inert(view.report)
        report.no_wrap = True
        self.query_one("#results-report", Static).update(report)
        self.query_one("#results-chart").display = bool(view.chart)
        self.query_one("#results-report").display = bool(view.report)
        self._show_options(view)
        projections = self.query_one("#results-projections", Static)
        if view.projections is not None:
            projections.update(projections_text(view.projections))
        projections.display = view.projections is not None
        self._update_bar()
        self.refresh_bindings()
        self._refresh_soon()  # cells saved while this computed

    def _show_options(self, view: ResultsView) -> None:
        """The likelihood-probe section: shown only when the sessions scored options."""
        section = self.query_one("#results-options", Static)
        chart_widget = self.query_one("#results-options-chart", Static)
        if view.options is not None:
            section.update(options_text(view.options))
        elif view.options_message:
            section.update(inert(f"Likelihood probes: {view.options_message}", "italic"))
        section.display = view.options is not None or bool(view.options_message)
        chart = inert(view.options_chart)
        chart.no_wrap = True
        chart_widget.update(chart)
        chart_widget.display = bool(view.options_chart)

    def _message_text(self, message: str) -> Text:
        text = Text("No results to show\n\n", "bold")
        text.append_text(inert(message))
        if INSTALL_COMMAND in message:
            text.append("\n\nInstall the analysis extra, then press r:\n  ", "italic")
            text.append(INSTALL_COMMAND, "bold")
        elif self.query_state.source != "human":
            text.append("\n\nPress s to take the labels from elsewhere.", "italic")
        return text

    def on_resize(self) -> None:
        """Redraw the chart for the new width, once the terminal stops changing size."""
        if self._resize_timer is not None:
            self._resize_timer.stop()
        if self._generation and self._chart_size()[0] != self.query_state.width:
            self._resize_timer = self.set_timer(0.3, self.action_recompute)

    # Status line ------------------------------------------------------------------------

    def _update_bar(self) -> None:
        analysis = self.view.analysis if self.view is not None else None
        query = self.query_state
        text = Text("Results ", "bold")
        text.append_text(inert(self.title_text))
        text.append(f"  labels: {query.source}")
        reference = query.reference or (analysis.reference if analysis else None)
        label = query.label or (analysis.contrast_label if analysis else None)
        if reference:
            text.append("  reference: ")
            text.append_text(inert(reference, "bold"))
        if label:
            text.append("  label: ")
            text.append_text(inert(label, "bold"))
        if self.computing and self.query_one("#results-body").loading:
            text.append("  · computing…", "italic")
        state = self.pass_state
        if state is not None:
            text.append(f"  options: {state.done}/{state.total} cells", "bold")
            if state.running:
                text.append(" · scoring, shown as they come", "italic")
            elif state.done < state.total:
                text.append(" · the pass stopped", "italic")
        self.query_one("#results-bar", Static).update(text)

    # Actions ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cycle_reference":
            return len(self.conditions) > 1
        if action == "cycle_label":
            return len(self.labels) > 1
        return True

    def action_cycle_reference(self, step: int) -> None:
        analysis = self.view.analysis if self.view is not None else None
        current = self.query_state.reference or (analysis.reference if analysis else None)
        reference = _cycle(self.conditions, current, step)
        if reference is not None:
            self.query_state = replace(self.query_state, reference=reference)
            self.action_recompute()

    def action_cycle_label(self, step: int) -> None:
        analysis = self.view.analysis if self.view is not None else None
        current = self.query_state.label or (analysis.contrast_label if analysis else None)
        label = _cycle(self.labels, current, step)
        if label is not None:
            self.query_state = replace(self.query_state, label=label)
            self.action_recompute()

    def action_cycle_source(self) -> None:
        """Labels from people, the scenario's rule scorers, or the judge's scores."""
        source = _cycle(SOURCES, self.query_state.source, 1) or "human"
        # Each source has its own labels: go back to its default label.
        self.query_state = replace(self.query_state, source=source, label=None)
        self.labels = ()
        self.action_recompute()

    def action_back(self) -> None:
        self.dismiss()


def _cycle(items: Sequence[T], current: T | None, step: int) -> T | None:
    """The item `step` places after `current` (wrapping); the first when `current` is absent."""
    if not items:
        return None
    if current not in items:
        return items[0]
    return items[(items.index(current) + step) % len(items)]
