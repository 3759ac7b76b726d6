"""Results screen flows: rates, verdicts and the chart of annotated sessions, from the keyboard.

Sessions are written through the real SessionStore (tests/analysis_sessions.py) into the
app's sessions folder, so the screen reads what a run and its annotators leave on disk.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from persona_tui.ui.screens import results as results_module
from persona_tui.ui.screens.annotate import AnnotateScreen
from persona_tui.ui.screens.results import ResultsScreen
from persona_tui.ui.screens.sessions import SessionBrowser
from tests.analysis_sessions import (
    STUDY_SCENARIO,
    SessionSpec,
    TrialSpec,
    attach_options,
    labelled_study,
    write_session,
)
from tests.functional.conftest import wait_for, workers_done

RULES = """
[[rules]]
label = "cruel"
keywords = ["framed"]
"""


def study_session(
    home: Path, scenario: str = STUDY_SCENARIO, number: int = 1, **counts: list[int]
) -> Path:
    """A session in the app's sessions folder: per condition, cruel samples per probe."""
    folder = home / "data" / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    chosen = counts or {"baseline": [0, 0, 1, 0, 0], "framed": [3, 4, 2, 3, 4]}
    session_id = f"2026-01-01T0000-framing-study-000{number}"
    spec = SessionSpec(scenario=scenario, session_id=session_id, trials=labelled_study(chosen))
    return write_session(folder / f"{session_id}.toml", spec)


def shown(screen: ResultsScreen, part: str) -> str:
    return str(screen.query_one(f"#results-{part}").render())


async def results_ready(pilot: Any) -> ResultsScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultsScreen))
    screen = pilot.app.screen
    assert isinstance(screen, ResultsScreen)
    await wait_for(pilot, lambda: not screen.computing)
    await pilot.pause()
    return screen


async def recomputed(pilot: Any, screen: ResultsScreen, *keys: str) -> None:
    await pilot.press(*keys)
    await wait_for(pilot, lambda: not screen.computing)
    await pilot.pause()


def test_browser_results_show_rates_verdicts_and_chart(make_app: Any, ui_home: Path) -> None:
    study_session(ui_home, STUDY_SCENARIO + RULES)

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, SessionBrowser))
            browser = app.screen
            await wait_for(pilot, lambda: bool(browser.query_one("#browser-table").summaries))
            await pilot.press("v")
            screen = await results_ready(pilot)
            summary = shown(screen, "summary")
            # 1/20 cruel under baseline, 16/20 under framed, with Wilson intervals.
            assert "Learns to bully" in summary
            assert "1/20" in summary and "5.0% [0.9%, 23.6%]" in summary
            assert "16/20" in summary and "80.0% [58.4%, 91.9%]" in summary
            assert "framed: +75.0 pp" in summary and "→ difference" in summary
            assert "'cruel' is more frequent under 'framed' than 'baseline'" in summary
            assert "rate of 'cruel' by condition" in shown(screen, "chart")
            assert "Framing contrasts" in shown(screen, "report")
            bar = shown(screen, "bar")
            assert "reference: baseline" in bar and "label: cruel" in bar
            assert app.focused is screen.query_one("#results-body")
            titles = {c.title for c in app.get_system_commands(screen)}
            assert {"Reference", "Label", "Source", "Recompute"} <= titles

            await recomputed(pilot, screen, "l")  # the next label: ok
            assert "Rate of 'ok'" in shown(screen, "summary")
            assert "label: ok" in shown(screen, "bar")
            assert "'ok' is less frequent under 'framed'" in shown(screen, "summary")

            await recomputed(pilot, screen, "c")  # the next reference: framed
            summary = shown(screen, "summary")
            assert "reference 'framed'" in summary and "baseline: +75.0 pp" in summary

            await recomputed(pilot, screen, "C")  # and back
            assert "reference: baseline" in shown(screen, "bar")

            await recomputed(pilot, screen, "s")  # labels from the scenario's rule scorer
            assert "labels: rules" in shown(screen, "bar")
            assert "first matching rule scorer" in shown(screen, "report")
            await recomputed(pilot, screen, "s")  # the judge: no scores in this session
            assert "no judge scores" in shown(screen, "summary")
            assert "Press s" in shown(screen, "summary")
            await recomputed(pilot, screen, "s")  # back to people's labels
            assert "labels: human" in shown(screen, "bar")
            assert "→ difference" in shown(screen, "summary")

            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is browser)

    asyncio.run(scenario())


def test_browser_results_of_every_session_of_a_scenario(make_app: Any, ui_home: Path) -> None:
    study_session(ui_home, number=1)
    study_session(ui_home, number=2)

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, SessionBrowser))
            table = app.screen.query_one("#browser-table")
            await wait_for(pilot, lambda: len(table.summaries) == 2)
            await pilot.press("V")
            screen = await results_ready(pilot)
            assert "framing-study · 2 sessions" in shown(screen, "bar")
            summary = shown(screen, "summary")
            assert "2/40" in summary and "32/40" in summary
            report = shown(screen, "report")
            assert "framing-study-0001, 2026-01-01T0000-framing-study-0002" in report

    asyncio.run(scenario())


def test_too_few_samples_are_said_plainly(make_app: Any, ui_home: Path) -> None:
    study_session(ui_home, baseline=[0, 1], framed=[2, 3])

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: bool(app.screen.query_one("#recent").summaries))
            await pilot.press("v")  # from Home: the selected recent session
            screen = await results_ready(pilot)
            summary = shown(screen, "summary")
            assert "→ too few" in summary and "too few samples for a claim" in summary

    asyncio.run(scenario())


def test_missing_analysis_extra_shows_install_hint(
    make_app: Any, ui_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = study_session(ui_home)
    # As if scipy and plotext were not installed: importing them fails.
    for module in ("scipy", "scipy.stats", "plotext"):
        monkeypatch.setitem(sys.modules, module, None)

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            app.push_screen(ResultsScreen([path]))
            screen = await results_ready(pilot)
            summary = shown(screen, "summary")
            assert "No results to show" in summary
            assert "pip install 'persona-tui[analysis]'" in summary
            assert not screen.query_one("#results-chart").display
            # Once the extra is there, `r` computes the report.
            monkeypatch.undo()
            await recomputed(pilot, screen, "r")
            assert "→ difference" in shown(screen, "summary")
            assert screen.query_one("#results-chart").display

    asyncio.run(scenario())


def test_annotations_made_in_the_app_reach_the_results(make_app: Any, ui_home: Path) -> None:
    folder = ui_home / "data" / "sessions"
    folder.mkdir(parents=True)
    trials = [TrialSpec(c, f"p{p}", 0) for c in ("baseline", "framed") for p in (1, 2)]
    path = write_session(folder / "fresh.toml", SessionSpec(trials=trials))

    async def scenario() -> None:
        app = make_app(annotate=path)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, AnnotateScreen))
            annotate = app.screen
            await pilot.pause()
            await pilot.press("c", "right", "o")  # two trials labelled: cruel, ok
            await pilot.press("ctrl+g")
            screen = await results_ready(pilot)
            assert "trials               4 (2 labelled)" in shown(screen, "report")
            assert "annotations by tester" in shown(screen, "report")
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is annotate)

    asyncio.run(scenario())


def test_blind_annotation_hides_the_results(make_app: Any, ui_home: Path) -> None:
    path = study_session(ui_home)

    async def scenario() -> None:
        app = make_app(annotate=path, blind=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, AnnotateScreen))
            screen = app.screen
            await pilot.pause()
            assert "Results" not in {c.title for c in app.get_system_commands(screen)}
            await pilot.press("ctrl+g")  # would reveal the conditions
            await pilot.pause()
            assert app.screen is screen

    asyncio.run(scenario())


def test_loading_state_newest_request_wins_and_resize_redraws(
    make_app: Any, ui_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = study_session(ui_home)
    gate = threading.Event()
    late = threading.Event()  # holds back the computation for the label "ok"
    real = results_module.compute_results

    def gated(paths: Any, query: results_module.ResultsQuery) -> Any:
        assert (late if query.label == "ok" else gate).wait(20)
        return real(paths, query)

    monkeypatch.setattr(results_module, "compute_results", gated)

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen = ResultsScreen([path])
            app.push_screen(screen)
            await wait_for(pilot, lambda: screen.computing)
            await pilot.pause()
            assert screen.query_one("#results-body").loading
            assert "computing…" in shown(screen, "bar")
            gate.set()
            await wait_for(pilot, lambda: not screen.computing)
            await pilot.pause()
            assert not screen.query_one("#results-body").loading
            assert "Rate of 'cruel'" in shown(screen, "summary")
            # Two quick changes (labels ok, then cruel): the older result, arriving last,
            # is not shown.
            await pilot.press("l", "l")
            await wait_for(pilot, lambda: not screen.computing)
            late.set()
            await workers_done(pilot)
            await pilot.pause()
            assert screen.query_state.label == "cruel"
            assert "Rate of 'cruel'" in shown(screen, "summary")
            # A wider terminal: the chart is drawn again to fit.
            await pilot.resize_terminal(120, 40)
            await wait_for(pilot, lambda: screen.query_state.width == 114 and not screen.computing)

    asyncio.run(scenario())


def test_likelihood_probes_get_their_own_section(make_app: Any, ui_home: Path) -> None:
    from tests.unit.test_options_report import shifted_cells

    with_options = study_session(ui_home, number=1)
    without = study_session(ui_home, number=2)
    attach_options({with_options: shifted_cells(1.5)})

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            app.push_screen(ResultsScreen([with_options]))
            screen = await results_ready(pilot)
            assert screen.query_one("#results-options").display
            section = shown(screen, "options")
            assert "Likelihood probes: log-odds of 'cruel' vs 'ok'" in section
            assert "framed vs baseline: higher under framed than baseline: +1." in section
            assert (
                "with 12 probes × 4 options this study resolves differences of about ±" in section
            )
            assert "interval half-width: ± probes" in section and "+ runs" not in section
            assert "Mean tokens per option: cruel 8.0 · ok 8.0" in section
            assert "· probe, ◆ mean" in shown(screen, "options-chart")
            assert "→ difference" in shown(screen, "summary")  # the trials' results stay
            assert "Likelihood probes: framing contrasts" in shown(screen, "report")
            await pilot.press("escape")
            app.push_screen(ResultsScreen([without]))
            plain = await results_ready(pilot)
            assert not plain.query_one("#results-options").display
            assert not plain.query_one("#results-options-chart").display
            assert "Likelihood" not in shown(plain, "report")

    asyncio.run(scenario())


def test_a_replicated_study_shows_runs_spread_and_the_run_level_test(
    make_app: Any, ui_home: Path
) -> None:
    from tests.analysis_sessions import replicated_options_session, write_replicated
    from tests.unit.test_replicate_stats import arm_cells

    values = {
        ("baseline", 0): [-4.0 + 0.3 * i for i in range(8)],
        **{
            ("framed", k): [-3.0 + shift + 0.3 * i for i in range(8)]
            for k, shift in ((1, -0.4), (2, 0.0), (3, 0.4))
        },
    }
    path = write_replicated(
        ui_home / "replicated.toml",
        replicated_options_session(arm_cells(values), ["framed"]),
    )

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.push_screen(ResultsScreen([path]))
            screen = await results_ready(pilot)
            section = shown(screen, "options")
            assert "95% bootstrap of probes, training runs, options" in section
            assert "3 runs SD 0.4 (−2.4 to −1.6)" in section
            assert "(3 training runs of framed × 8 probes × 4 options)" in section
            assert "+ runs" in section and "runs p = 0.25 (run-level sign flip)" in section
            assert "cannot reach p < 0.05 (8 sign patterns: the smallest p is 0.25)" in section
            report = shown(screen, "report")
            assert "interval half-width by level" in report and "run SD" in report

    asyncio.run(scenario())


def test_trait_projections_get_their_own_section(make_app: Any, ui_home: Path) -> None:
    from tests.analysis_sessions import projection_study, write_with_trials

    folder = ui_home / "data" / "sessions"
    labelled = write_with_trials(folder / "labelled.toml", projection_study())
    unlabelled = write_with_trials(folder / "unlabelled.toml", projection_study(labelled=False))
    plain = study_session(ui_home, number=3)

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            app.push_screen(ResultsScreen([labelled]))
            screen = await results_ready(pilot)
            assert screen.query_one("#results-projections").display
            section = shown(screen, "projections")
            assert "Trait projections: malice at layer 3, responses (mean over tokens)" in section
            assert "Trait projections: malice at layer 3, prompts (last token)" in section
            assert "framed vs baseline: higher under framed than baseline: +1." in section
            assert "agreement with option log-odds 'cruel' vs 'ok' across conditions" in section
            assert "no correlation with n = 2 conditions (it needs at least 3)" in section
            assert "across condition × probe cells: r = " in section
            assert "agreement with 'cruel' label rate across conditions" in section
            assert "Trait projections: malice" in shown(screen, "report")
            await pilot.press("escape")
            app.push_screen(ResultsScreen([unlabelled]))
            screen = await results_ready(pilot)  # no labels yet: the projections still show
            assert screen.query_one("#results-projections").display
            assert "framed vs baseline: higher" in shown(screen, "projections")
            assert "label rate" not in shown(screen, "projections")
            await pilot.press("escape")
            app.push_screen(ResultsScreen([plain]))
            screen = await results_ready(pilot)
            assert not screen.query_one("#results-projections").display
            assert "Trait projections" not in shown(screen, "report")

    asyncio.run(scenario())
