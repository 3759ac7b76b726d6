"""What a Results screen shows, computed in one call (no Textual here).

`results_view` loads sessions, analyses them and returns the plain-text report, a
terminal bar chart and the Analysis itself; problems a user can fix (no labels yet, the
`analysis` extra missing) come back as `message` instead of an exception, so a UI can
show them as they are. Sessions with scored answer options also get their
`OptionsAnalysis` and a terminal chart of it, sessions with trait projections their
`ProjectionsAnalysis` (shown even when the trials are not labelled yet). Blocking work: call
it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from persona_tui.analysis.labels import JudgeRule, Source
from persona_tui.analysis.options import OptionsAnalysis
from persona_tui.analysis.projections import ProjectionsAnalysis
from persona_tui.analysis.records import Dataset
from persona_tui.analysis.summary import Analysis
from persona_tui.errors import PersonaError


@dataclass(frozen=True)
class ResultsView:
    analysis: Analysis | None
    report: str  # the text report ("" when message is set)
    chart: str  # plotext bar chart of the contrast label per condition, no escape codes
    message: str = ""  # why nothing could be shown, in words a user can act on
    options: OptionsAnalysis | None = None  # likelihood probes, when sessions scored options
    options_chart: str = ""  # plotext chart of the per-probe log-odds, no escape codes
    options_message: str = ""  # why the options could not be analysed (e.g. one label only)
    projections: ProjectionsAnalysis | None = None  # trait projections, when measured


def results_view(
    paths: Sequence[Path],
    *,
    width: int = 80,
    height: int = 20,
    source: Source = "human",
    reference: str | None = None,
    label: str | None = None,
    annotator: str | None = None,
    judge_rule: JudgeRule | None = None,
    color: bool = False,
) -> ResultsView:
    """Report and chart of `paths` for a Results screen; `message` explains any failure."""
    from persona_tui.analysis.options import analyze_options
    from persona_tui.analysis.plots import terminal_chart, terminal_options_chart
    from persona_tui.analysis.records import load_dataset
    from persona_tui.analysis.report import render
    from persona_tui.analysis.summary import analyze

    options: OptionsAnalysis | None = None
    options_chart = options_message = ""
    projections: ProjectionsAnalysis | None = None
    try:
        dataset = load_dataset(list(paths))
        if dataset.options:
            try:
                options = analyze_options(dataset)
                options_chart = terminal_options_chart(
                    options, width=width, height=height, color=color
                )
            except PersonaError as error:
                options_message = str(error)
        if not dataset.records and options is not None:  # options scored, nothing sampled
            projections = _projections(dataset, options, None)
            return ResultsView(
                None,
                render(None, "text", options, projections),
                "",
                "the sessions hold no sampled trials, only scored answer options",
                options,
                options_chart,
                projections=projections,
            )
        try:
            analysis = analyze(
                dataset,
                source=source,
                reference=reference,
                label=label,
                annotator=annotator,
                judge_rule=judge_rule,
            )
        except PersonaError:
            projections = _projections(dataset, options, None)  # shown without labels too
            raise
        projections = _projections(dataset, options, analysis)
        chart = terminal_chart(analysis, width=width, height=height, label=label, color=color)
    except PersonaError as error:
        return ResultsView(
            None, "", "", str(error), options, options_chart, options_message, projections
        )
    return ResultsView(
        analysis,
        render(analysis, "text", options, projections),
        chart,
        options=options,
        options_chart=options_chart,
        options_message=options_message,
        projections=projections,
    )


def _projections(
    dataset: Dataset, options: OptionsAnalysis | None, analysis: Analysis | None
) -> ProjectionsAnalysis | None:
    from persona_tui.analysis.projections import analyze_projections

    if not dataset.projections:
        return None
    return analyze_projections(dataset, options=options, analysis=analysis)
