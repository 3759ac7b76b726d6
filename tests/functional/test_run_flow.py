"""Run screen flows on the real llama.cpp backend with the tiny GGUF."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.geometry import Region

from persona_tui.scenario.parse import parse_scenario
from persona_tui.session.store import load_session
from persona_tui.ui.run_bridge import TextBatch
from persona_tui.ui.sanitize import sanitize_for_display
from persona_tui.ui.screens.run import RunScreen
from persona_tui.ui.text import wrap_rows
from persona_tui.ui.widgets.condition_column import ConditionColumn
from persona_tui.ui.widgets.stream_view import StreamView
from tests.functional.conftest import sessions_in, wait_for
from tests.scenario_text import SMALL_SCENARIO


def responses(path: Path) -> dict[tuple[str, str, int], str]:
    return {(t.condition, t.probe, t.sample): t.response for t in load_session(path).trials}


def test_run_streams_columns_and_saves(
    make_app: Any, ui_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_flight: list[int] = []  # trials in flight in a column as each one starts there
    start_trial = ConditionColumn.start_trial

    def counting(column: ConditionColumn, probe_id: str, sample: int) -> None:
        start_trial(column, probe_id, sample)
        in_flight.append(column.in_flight)

    monkeypatch.setattr(ConditionColumn, "start_trial", counting)

    async def scenario() -> None:
        batches: list[TextBatch] = []
        app = make_app(scenario="small")

        def hook(message: object) -> None:
            if isinstance(message, TextBatch):
                batches.append(message)

        async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            assert isinstance(screen, RunScreen)
            await wait_for(pilot, lambda: screen.finished_status == "complete")
            await pilot.pause()
            columns = list(screen.query(ConditionColumn))
            assert [c.condition.id for c in columns] == ["baseline", "framed"]
            assert [c.done for c in columns] == [6, 6]
            assert "12/12 trials" in str(screen.query_one(".run-status").render())
            # Each column shows its last cell's samples (decoded together: one pane each),
            # each pane the response that was saved.
            session = load_session(sessions_in(ui_home)[0])
            assert session.header.plan.batch == 2
            saved = {(t.condition, t.probe, t.sample): t for t in session.trials}
            for column in columns:
                assert len(column.panes) == 2
                for pane in column.panes:
                    probe, sample = pane.trial
                    trial = saved[(column.condition.id, probe, sample)]
                    assert pane.text == sanitize_for_display(trial.response)
        session = load_session(sessions_in(ui_home)[0])
        assert session.header.status == "complete"
        assert len(session.trials) == 12
        # A column's three cells are one group, two at a time: a trial starts as another
        # ends, so no more than two are ever in flight in a column.
        assert session.header.plan.batch_cells == 3
        assert len(in_flight) == 12 and max(in_flight) == 2
        # Text reached the widgets in batches, each part belonging to one trial's turn.
        assert batches
        assert {(p.spec.condition, p.spec.probe) for b in batches for p in b.parts} <= {
            (t.condition, t.probe) for t in session.trials
        }

    asyncio.run(scenario())


def shown_rows(view: StreamView) -> list[str]:
    """The rows of text the view shows on screen now (trailing blanks dropped)."""
    region = Region(0, 0, view.size.width, view.size.height)
    return [strip.text.rstrip() for strip in view.render_lines(region)]


def test_streamed_text_wraps_fully_and_follows_the_end() -> None:
    """Streamed batches repaint only what changed yet show every wrapped line and the end."""
    scenario_ = parse_scenario(SMALL_SCENARIO)
    condition = scenario_.conditions[0]
    probe = scenario_.probes[0].id
    words = [f"word{i} " + ("\n" if i % 17 == 16 else "") for i in range(120)]

    class ColumnApp(App[None]):
        def compose(self) -> ComposeResult:
            yield ConditionColumn(scenario_, condition, planned=1)

    async def scenario() -> None:
        app = ColumnApp()
        async with app.run_test(size=(60, 20)) as pilot:
            column = app.query_one(ConditionColumn)
            column.start_trial(probe, 0)
            await pilot.pause()
            (view,) = column.panes
            view.follow_interval = 0  # follow at every append, to check every step
            width = view.scrollable_content_region.width
            for index, word in enumerate(words):
                column.append_text(probe, 0, 0, word)
                await pilot.pause()
                expected = "".join(words[: index + 1])
                assert view.text == expected
                rows = [r for p in expected.split("\n") for r in wrap_rows(p, width)]
                assert view.rows == rows
                assert view.virtual_size.height == len(rows)
                assert view.scroll_y == view.max_scroll_y
                # On screen: the last rows of the text, each within the width.
                height = view.scrollable_content_region.height
                assert shown_rows(view) == [r.rstrip() for r in rows[-height:]] + [""] * max(
                    0, height - len(rows)
                )
            assert view.max_scroll_y > 0  # the text outgrew the column: following was tested
            assert view.work.layouts == 0  # the scrollbar is always there: never a layout
            view.scroll_home(animate=False, immediate=True)
            await pilot.pause()
            for word in ("more ", "text\n", "after scrolling up"):
                column.append_text(probe, 0, 0, word)
                await pilot.pause()
            assert view.scroll_y == 0 < view.max_scroll_y
            assert view.text.endswith("after scrolling up")
            first = "word0 word1 word2 word3 word4 word5 word6 word7 word8"
            assert shown_rows(view)[0] == view.rows[0].rstrip() == first

    asyncio.run(scenario())


LONG = SMALL_SCENARIO.replace("max_tokens = 12", "max_tokens = 400").replace(
    "temperature = 0.9", "temperature = 1.5"
)


def test_cancel_keeps_finished_trials_and_resume_completes(make_app: Any, ui_home: Path) -> None:
    (ui_home / "config" / "scenarios" / "long.toml").write_text(
        LONG.replace('id = "small"', 'id = "long"'), encoding="utf-8"
    )

    async def scenario() -> None:
        batches: list[TextBatch] = []
        app = make_app(scenario="long")

        def hook(message: object) -> None:
            if isinstance(message, TextBatch):
                batches.append(message)

        async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            assert isinstance(screen, RunScreen)
            await wait_for(pilot, lambda: len(batches) >= 2)
            await pilot.press("c")
            await wait_for(pilot, lambda: screen.finished_status != "")
            assert screen.finished_status == "interrupted"
            path = sessions_in(ui_home)[0]
            cancelled = load_session(path)
            assert cancelled.header.status == "interrupted"
            assert len(cancelled.trials) < 12
            # The cancelled trial was not saved; only finished ones are.
            assert all(t.finish_reason in ("stop", "length") for t in cancelled.trials)
            await pilot.press("r")
            await wait_for(pilot, lambda: screen.finished_status == "complete", timeout=120)
        done = load_session(path)
        assert done.header.status == "complete"
        assert len(done.trials) == 12
        for trial in cancelled.trials:  # finished trials were kept as they were
            assert responses(path)[(trial.condition, trial.probe, trial.sample)] == trial.response

    asyncio.run(scenario())


def test_quit_during_run_leaves_session_resumable(make_app: Any, ui_home: Path) -> None:
    (ui_home / "config" / "scenarios" / "long.toml").write_text(
        LONG.replace('id = "small"', 'id = "long"'), encoding="utf-8"
    )

    async def scenario() -> None:
        batches: list[TextBatch] = []
        app = make_app(scenario="long")

        def hook(message: object) -> None:
            if isinstance(message, TextBatch):
                batches.append(message)

        async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
            await wait_for(pilot, lambda: len(batches) >= 1)
            await pilot.press("ctrl+q")
            await pilot.pause()
        session = load_session(sessions_in(ui_home)[0])
        assert session.header.status == "interrupted"

        # Resume from Home's recent sessions list with `r`.
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: bool(app.screen.query_one("#recent").row_count))
            app.screen.query_one("#recent").focus()
            await pilot.press("r")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            assert isinstance(screen, RunScreen)
            await wait_for(pilot, lambda: screen.finished_status == "complete", timeout=120)
            await pilot.press("escape")
        session = load_session(sessions_in(ui_home)[0])
        assert session.header.status == "complete"
        assert len(session.trials) == 12

    asyncio.run(scenario())


def test_bad_model_file_shows_error_and_app_stays_alive(
    make_app: Any, ui_home: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)

    async def scenario() -> None:
        app = make_app(scenario="small", model=str(broken))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            assert isinstance(screen, RunScreen)
            message = screen.query_one("#run-message")
            await wait_for(pilot, lambda: "-error" in message.classes)
            assert "Could not run" in str(message.render())
            assert "broken.gguf" in str(message.render())
            assert screen.store is None
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, RunScreen))
            assert app.is_running
        assert sessions_in(ui_home) == []

    asyncio.run(scenario())


def test_the_app_resumes_a_session_with_its_choice_not_to_score(
    make_app: Any, ui_home: Path, tmp_path: Path, tiny_model: Path
) -> None:
    """A session started with `persona-tui run --no-score` and stopped: the app's resume
    samples the rest and scores no options (the session's choice, `[plan].score`)."""
    from persona_tui.models.config import Config
    from persona_tui.run.events import RunEvent, TrialFinished
    from persona_tui.run.finish import finish_run
    from persona_tui.run.lifecycle import RunRequest, open_run
    from persona_tui.run.plan import RunOptions
    from persona_tui.run.runner import RunControl
    from persona_tui.ui.options_pass import OptionsPassPanel
    from tests.functional.conftest import one_thread_loader
    from tests.scenario_text import OPTIONS_SCENARIO

    path = tmp_path / "no-score.toml"
    request = RunRequest(
        config=Config(),
        scenario=parse_scenario(OPTIONS_SCENARIO, "options.toml"),
        model=str(tiny_model),
        options=RunOptions(samples=1, max_tokens=4, score=False),
        out=path,
    )
    control = RunControl()

    def stop_after_a_trial(event: RunEvent) -> None:
        if isinstance(event, TrialFinished):
            control.cancel()

    with open_run(request, stop_after_a_trial, one_thread_loader) as run:
        finish_run(run, stop_after_a_trial, control)
    assert load_session(path).header.status == "interrupted"

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(100, 30)) as pilot:
            app.start_run(None, None, resume=path)  # as Home's and the session browser's r
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            assert isinstance(screen, RunScreen)
            await wait_for(pilot, lambda: screen.finished_status == "complete", timeout=120)
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert screen.query_one(OptionsPassPanel).state == "idle"  # no pass started

    asyncio.run(scenario())
    session = load_session(path)
    assert len(session.trials) == 6 and session.option_cells == []
    assert session.header.status == "complete" and session.header.plan.score is False


def test_a_run_with_a_trait_shows_its_extraction_and_projections_and_saves_them(
    make_app: Any, ui_home: Path
) -> None:
    """A scenario declaring a trait: the Run screen says the trait is being extracted, then
    that projections are measured; the session ends with every projection."""
    from persona_tui.run.events import ProjectionsProgress, VectorsProgress
    from persona_tui.ui.run_bridge import RunEventMessage
    from tests.scenario_text import TRAIT_SCENARIO

    (ui_home / "config" / "scenarios" / "small-traits.toml").write_text(TRAIT_SCENARIO, "utf-8")
    seen: list[str] = []

    async def scenario() -> None:
        app = make_app(scenario="small-traits")

        def hook(message: object) -> None:
            if isinstance(message, RunEventMessage) and isinstance(
                message.event, VectorsProgress | ProjectionsProgress
            ):
                seen.append(type(message.event).__name__)

        async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            assert isinstance(screen, RunScreen)
            await wait_for(pilot, lambda: screen.finished_status == "complete", timeout=120)
            await pilot.pause()
            # What a person reads while the projection pass runs.
            screen.post_message(RunEventMessage(ProjectionsProgress(3, 8)))
            await pilot.pause()
            assert "projections 3/8" in str(screen.query_one(".run-status").render())

    asyncio.run(scenario())
    assert "VectorsProgress" in seen and "ProjectionsProgress" in seen
    (path,) = sessions_in(ui_home)
    session = load_session(path)
    assert set(session.header.traits) == {"malice"}
    assert all("malice" in t.projections for t in session.trials)
    assert all("malice" in c.projections for c in session.option_cells)
