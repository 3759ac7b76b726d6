"""Home, session browser, compare, themes and the command palette."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from typing import Any

from textual.command import CommandList, CommandPalette
from textual.screen import Screen

from persona_tui.models.config import Config
from persona_tui.session.store import load_session
from persona_tui.ui.screens.annotate import AnnotateScreen
from persona_tui.ui.screens.compare import CompareScreen
from persona_tui.ui.screens.dialogs import ConfirmDialog, InfoDialog
from persona_tui.ui.screens.home import HomeScreen
from persona_tui.ui.screens.run import RunScreen
from persona_tui.ui.screens.sessions import SessionBrowser, SessionTable
from persona_tui.ui.themes import load_themes
from tests.functional.conftest import sessions_in, wait_for


def test_home_lists_scenarios_and_enter_starts_a_run(make_app: Any, ui_home: Path) -> None:
    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, HomeScreen)
            ids = [s.id for s in screen.scenarios]
            assert {"bully-school-play", "reward-hacking-framings", "small"} <= set(ids)
            while screen.selected_scenario() is None or screen.selected_scenario().id != "small":
                await pilot.press("down")
            details = str(screen.query_one("#scenario-text").render())
            assert "2 conditions × 3 probes × 2 samples = 12 trials" in details
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            run = app.screen
            assert isinstance(run, RunScreen)
            await wait_for(pilot, lambda: run.finished_status == "complete")
            await pilot.press("a")  # annotate straight from the finished run
            await wait_for(pilot, lambda: isinstance(app.screen, AnnotateScreen))
            await pilot.press("m", "escape", "escape")
            await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))
            await wait_for(pilot, lambda: screen.query_one("#recent", SessionTable).row_count == 1)
        trials = load_session(sessions_in(ui_home)[0]).trials
        assert sum(1 for t in trials if t.annotations) == 1

    asyncio.run(scenario())


def test_session_browser_filters_shows_record_compares_and_deletes(
    make_app: Any, finished_session: Path
) -> None:
    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, SessionBrowser))
            browser = app.screen
            assert isinstance(browser, SessionBrowser)
            table = browser.query_one(SessionTable)
            await wait_for(pilot, lambda: table.row_count == 1)
            await pilot.press("f")  # status: running → none match
            assert browser.status_filter == "running" and table.row_count == 0
            await pilot.press("f", "f")  # complete
            assert table.row_count == 1
            await pilot.press("i")
            await wait_for(pilot, lambda: isinstance(app.screen, InfoDialog))
            record = str(app.screen.query_one(".dialog-body Static").render())
            session = load_session(finished_session)
            assert session.header.model.sha256 in record
            assert session.header.scenario_sha256 in record
            assert str(session.trials[0].seed) in record
            await pilot.press("escape", "c")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
            compare = app.screen
            assert isinstance(compare, CompareScreen)
            assert len(compare.query(".compare-column")) == 2
            await pilot.press("n")
            assert compare.index == 1
            await pilot.press("escape", "d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("n")  # declined: nothing deleted
            assert finished_session.exists()
            await pilot.press("d", "y")
            await wait_for(pilot, lambda: not finished_session.exists())
            await wait_for(pilot, lambda: table.row_count == 0)

    asyncio.run(scenario())


def palette_shows(palette: Screen[Any], prompt: str) -> bool:
    """Whether the command palette is done searching and highlights the command `prompt`."""
    searching = any(w.node is palette and not w.is_finished for w in palette.app.workers)
    option = palette.query_one(CommandList).highlighted_option
    return not searching and option is not None and prompt in str(option.prompt)


def test_theme_switch_from_palette_is_saved(make_app: Any, ui_home: Path) -> None:
    config_file = ui_home / "config.toml"

    async def scenario() -> None:
        app = make_app(config=Config(path=config_file, annotator="t"), persist_theme=True)
        async with app.run_test(size=(80, 24)) as pilot:
            assert app.theme == "persona-dark"
            await pilot.press("ctrl+p")
            await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
            palette = app.screen
            await pilot.press(*"persona-light")
            # The palette searches in a worker, started again at each key: enter picks the
            # highlighted match only once that search shows it (a fixed pause was not
            # always enough on a loaded machine: enter then did nothing).
            await wait_for(pilot, lambda: palette_shows(palette, "Theme: persona-light"))
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.theme == "persona-light")
        assert tomllib.loads(config_file.read_text())["theme"] == "persona-light"
        # The next start uses the saved theme.
        app = make_app(config=Config(path=config_file, theme="persona-light"))
        async with app.run_test(size=(80, 24)):
            assert app.theme == "persona-light"

    asyncio.run(scenario())


def test_broken_theme_files_are_reported_once(make_app: Any, ui_home: Path) -> None:
    themes = ui_home / "config" / "themes"
    themes.mkdir(parents=True)
    (themes / "bad-syntax.toml").write_text("name = \n", encoding="utf-8")
    (themes / "bad-colour.toml").write_text('primary = "nope"\nprimray = "#fff"\n')
    (themes / "mine.toml").write_text('name = "mine"\nprimary = "#ff8800"\ndark = false\n')
    loaded = load_themes()
    assert "mine" in loaded.names
    assert len(loaded.problems) == 3
    assert any("bad-colour.toml: primary" in p for p in loaded.problems)
    assert any("did you mean 'primary'" in p for p in loaded.problems)

    async def scenario() -> None:
        app = make_app()
        notes: list[tuple[str, str]] = []
        notify = app.notify

        def record(message: str, **kwargs: Any) -> None:
            notes.append((kwargs.get("title", ""), message))
            notify(message, **kwargs)

        app.notify = record  # type: ignore[method-assign]
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            problems = [m for title, m in notes if title == "Theme problems"]
            assert len(problems) == 1
            assert "bad-syntax.toml" in problems[0]
            app.theme = "mine"
            await pilot.pause()
            assert app.current_theme.name == "mine"

    asyncio.run(scenario())
