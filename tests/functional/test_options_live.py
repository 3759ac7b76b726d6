"""The Run screen while the option pass scores, on the real engine (the tiny GGUF).

What a person sees and does: the keys the footer and the command palette offer in each
phase, Results opened during the pass (the cells done so far, then more as they are
saved), Annotate during the pass (nothing annotated is lost when the pass is then
cancelled or fails). The pass is held cell by cell by a gate on `save_option_cell`, so
each step happens while the worker is scoring, as on a slow machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets._footer import FooterKey

from persona_tui.errors import SessionError
from persona_tui.session.model import OptionCell
from persona_tui.session.store import SessionStore, load_session
from persona_tui.ui.options_pass import OptionsPassPanel
from persona_tui.ui.screens.annotate import AnnotateScreen
from persona_tui.ui.screens.results import ResultsScreen
from persona_tui.ui.screens.run import RunScreen
from tests.functional.conftest import sessions_in, wait_for
from tests.functional.gate import Gate, gated
from tests.scenario_text import OPTIONS_SCENARIO

CELLS = 4  # 2 conditions × 2 probes with options
DURING_SAMPLING = {"space", "c", "escape"}
DURING_OPTIONS = {"c", "a", "o", "v", "escape"}
AFTER = {"a", "o", "v", "escape"}


@pytest.fixture
def options_home(ui_home: Path) -> Path:
    (ui_home / "config" / "scenarios" / "small-options.toml").write_text(
        OPTIONS_SCENARIO, encoding="utf-8"
    )
    return ui_home


APP_KEYS = {"ctrl+q", "ctrl+p"}  # quit and the palette, on every screen


def footer_keys(screen: RunScreen) -> set[str]:
    """The Run screen's keys the footer shows enabled now."""
    return {key.key for key in screen.query(FooterKey) if not key.disabled} - APP_KEYS


def palette_titles(pilot: Pilot[Any], screen: RunScreen) -> set[str]:
    return {command.title for command in pilot.app.get_system_commands(screen)}


async def run_screen_in_options(pilot: Pilot[Any]) -> RunScreen:
    """The Run screen once sampling is done and the pass waits on its first cell."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
    screen = pilot.app.screen
    assert isinstance(screen, RunScreen)
    await wait_for(pilot, lambda: screen.phase == "options", timeout=60)
    return screen


def options_cells(screen: ResultsScreen) -> int:
    """The cells the Results screen's likelihood section is computed from."""
    options = screen.view.options if screen.view is not None else None
    return len(options.per_probe) if options is not None else 0


def test_keys_follow_the_phase_in_footer_and_palette(
    make_app: Any, options_home: Path, cell_gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    trial_gate = Gate()
    monkeypatch.setattr(SessionStore, "save_trial", gated(trial_gate, SessionStore.save_trial))

    async def scenario() -> None:
        app = make_app(scenario="small-options")
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            assert isinstance(screen, RunScreen)
            await wait_for(pilot, lambda: screen.phase == "sampling", timeout=60)
            await wait_for(pilot, lambda: footer_keys(screen) == DURING_SAMPLING)
            titles = palette_titles(pilot, screen)
            assert {"Pause/Resume", "Cancel"} <= titles
            assert not {"Results", "Annotate"} & titles
            await pilot.press("v")  # does nothing while sampling
            assert app.screen is screen

            trial_gate.open.set()
            await wait_for(pilot, lambda: screen.phase == "options", timeout=60)
            await wait_for(pilot, lambda: footer_keys(screen) == DURING_OPTIONS)
            titles = palette_titles(pilot, screen)
            assert {"Results", "Annotate", "Compare", "Cancel"} <= titles
            assert "Pause/Resume" not in titles  # the option pass does not pause

            cell_gate.open.set()
            await wait_for(pilot, lambda: screen.finished_status == "complete", timeout=60)
            await wait_for(pilot, lambda: footer_keys(screen) == AFTER)
            titles = palette_titles(pilot, screen)
            assert {"Results", "Annotate", "Compare"} <= titles
            assert not {"Cancel", "Resume", "Pause/Resume"} & titles
        trial_gate.open.set()

    asyncio.run(scenario())


def test_results_during_the_pass_shows_cells_as_they_arrive(
    make_app: Any, options_home: Path, cell_gate: Gate
) -> None:
    async def scenario() -> None:
        app = make_app(scenario="small-options")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await run_screen_in_options(pilot)
            panel = screen.query_one(OptionsPassPanel)
            cell_gate.allow(1)
            await wait_for(pilot, lambda: panel.done == 1)

            await pilot.press("v")
            await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
            results = app.screen
            assert isinstance(results, ResultsScreen)
            await wait_for(pilot, lambda: results.view is not None and not results.computing)
            assert options_cells(results) == 1  # what is done so far
            bar = str(results.query_one("#results-bar").render())
            assert f"options: 1/{CELLS} cells" in bar and "scoring" in bar
            assert screen.running and screen.phase == "options"  # the pass goes on

            cell_gate.allow(1)  # one more cell: Results follows
            await wait_for(pilot, lambda: options_cells(results) == 2, timeout=30)
            assert not results.query_one("#results-body").loading  # no overlay: no flicker

            cell_gate.allow(CELLS)
            await wait_for(pilot, lambda: options_cells(results) == CELLS, timeout=30)
            await wait_for(pilot, lambda: results.pass_state is not None)
            await wait_for(pilot, lambda: not results.pass_state.running)  # type: ignore[union-attr]
            assert f"options: {CELLS}/{CELLS} cells" in str(
                results.query_one("#results-bar").render()
            )

            await pilot.press("escape")  # back: the pass finished meanwhile
            assert app.screen is screen
            await wait_for(pilot, lambda: screen.finished_status == "complete", timeout=30)
            assert panel.state == "complete"
        session = load_session(sessions_in(options_home)[0])
        assert session.header.status == "complete"
        assert len(session.option_cells) == CELLS

    asyncio.run(scenario())


@pytest.mark.parametrize("ending", ["cancelled", "failed"])
def test_annotations_made_during_the_pass_are_kept(
    make_app: Any,
    options_home: Path,
    cell_gate: Gate,
    monkeypatch: pytest.MonkeyPatch,
    ending: str,
) -> None:
    if ending == "failed":  # the second cell's save fails (a full disk, say)
        gated = SessionStore.save_option_cell
        calls: list[OptionCell] = []

        def failing(store: SessionStore, cell: OptionCell) -> None:
            calls.append(cell)
            if len(calls) == 2:
                cell_gate.wait()
                raise SessionError("could not save session: No space left on device")
            gated(store, cell)

        monkeypatch.setattr(SessionStore, "save_option_cell", failing)

    async def scenario() -> Path:
        app = make_app(scenario="small-options")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await run_screen_in_options(pilot)
            panel = screen.query_one(OptionsPassPanel)
            cell_gate.allow(1)
            await wait_for(pilot, lambda: panel.done == 1)
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, AnnotateScreen))
            annotate = app.screen
            assert isinstance(annotate, AnnotateScreen)
            await wait_for(pilot, lambda: annotate.current is not None)
            first = annotate.current
            assert first is not None
            await pilot.press("m")  # label it malicious: saved at once
            await pilot.press("right")
            await pilot.press("b")
            assert screen.running  # the pass goes on under Annotate

            if ending == "cancelled":
                await pilot.press("escape")
                assert app.screen is screen  # back: the pass still going, its keys offered
                assert panel.state == "scoring" and screen.running
                await wait_for(pilot, lambda: footer_keys(screen) == DURING_OPTIONS)
                await pilot.press("c")
                cell_gate.open.set()
                await wait_for(pilot, lambda: not screen.running, timeout=30)
                assert screen.finished_status == "interrupted"
            else:
                cell_gate.open.set()  # the next cell fails the pass
                await wait_for(pilot, lambda: not screen.running, timeout=30)
                await pilot.press("escape")
                assert app.screen is screen
                assert screen.query_one(".run-status").render()
            path = screen.store.path if screen.store is not None else None
            assert path is not None
            # The session still opens on what is done: Annotate again after the pass.
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, AnnotateScreen))
            await pilot.press("escape")
        return path

    path = asyncio.run(scenario())
    session = load_session(path)
    assert session.header.status == "interrupted"  # resumable: the rest is still to score
    labels = sorted(a.label for t in session.trials for a in t.annotations)
    assert labels == ["benign", "malicious"]
    assert 1 <= len(session.option_cells) < CELLS
