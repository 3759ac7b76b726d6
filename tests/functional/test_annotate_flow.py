"""Annotate screen flows: keys from the scenario schema, saved at once to the session file."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path
from typing import Any

from persona_tui.models.config import Config
from persona_tui.session.annotating import blind_seed_for, trial_order
from persona_tui.session.store import load_session
from persona_tui.ui.screens.annotate import AnnotateScreen
from persona_tui.ui.screens.dialogs import TextPrompt
from tests.functional.conftest import wait_for


def mine(path: Path, annotator: str = "tester") -> dict[tuple[str, str, int], Any]:
    return {
        (t.condition, t.probe, t.sample): a
        for t in load_session(path).trials
        for a in t.annotations
        if a.annotator == annotator
    }


def test_keys_set_label_scale_and_note_saved_immediately(
    make_app: Any, finished_session: Path
) -> None:
    async def scenario() -> None:
        app = make_app(annotate=finished_session)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, AnnotateScreen))
            screen = app.screen
            assert isinstance(screen, AnnotateScreen)
            await pilot.pause()
            first = screen.order[0]
            key = (first.condition, first.probe, first.sample)
            await pilot.press("m")  # label "malicious"
            assert mine(finished_session)[key].label == "malicious"
            assert mine(finished_session)[key].blind_seed is None  # not blind: no seed saved
            assert "blind_seed" not in finished_session.read_text("utf-8")
            await pilot.press("3")  # scale "malice" = 3
            assert mine(finished_session)[key].scores == {"malice": 3}
            await pilot.press("plus", "plus")  # clamped to max 4
            assert mine(finished_session)[key].scores == {"malice": 4}
            await pilot.press("b")  # another label replaces the first
            assert mine(finished_session)[key].label == "benign"
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
            await pilot.press(*"odd [bold]", "enter")
            await wait_for(pilot, lambda: app.screen is screen)
            assert mine(finished_session)[key].note == "odd [bold]"
            await pilot.press("right", "m")
            second = screen.order[1]
            assert mine(finished_session)[
                (second.condition, second.probe, second.sample)
            ].label == ("malicious")
            await pilot.press("left")
            assert screen.index == 0
            titles = {c.title for c in app.get_system_commands(screen)}
            assert {"Label: malicious", "Label: benign", "Note", "Unannotated only"} <= titles
            status = str(screen.query_one("#annotate-status").render())
            assert "trial 1/12" in status and "2/12 annotated" in status
        # One annotation per annotator and trial, however many keys were pressed.
        assert len(load_session(finished_session).trials[0].annotations) <= 1

    asyncio.run(scenario())


def test_unannotated_filter_skips_done_trials(make_app: Any, finished_session: Path) -> None:
    async def scenario() -> None:
        app = make_app(annotate=finished_session)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, AnnotateScreen))
            screen = app.screen
            assert isinstance(screen, AnnotateScreen)
            await pilot.press("right", "m", "right", "m")  # trials 2 and 3 annotated
            await pilot.press("left", "left")  # back on trial 1
            await pilot.press("ctrl+u", "right")
            assert screen.index == 3  # skipped trials 2 and 3
            await pilot.press("left")
            assert screen.index == 0

    asyncio.run(scenario())


def test_blind_mode_hides_conditions_and_shuffle_is_reproducible(
    make_app: Any, finished_session: Path
) -> None:
    session = load_session(finished_session)
    seed = blind_seed_for(session.header.id, "tester")
    expected = trial_order(session.trials, session.header.plan, seed)
    assert expected != trial_order(session.trials, session.header.plan, None)

    async def scenario() -> list[Any]:
        app = make_app(annotate=finished_session, blind=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, AnnotateScreen))
            screen = app.screen
            assert isinstance(screen, AnnotateScreen)
            await pilot.pause()
            order = list(screen.order)
            shown = str(screen.query_one("#annotate-condition").render())
            assert "hidden" in shown
            labels = {"Baseline", "Framed"}
            assert not any(label in shown for label in labels)
            status = str(screen.query_one("#annotate-status").render())
            assert f"seed {seed}" in status
            shown_seed = re.search(r"blind · seed (\d+)", status)
            assert shown_seed is not None
            await pilot.press("ctrl+o")  # compare would reveal conditions: disabled
            assert app.screen is screen
            first = (order[0].condition, order[0].probe, order[0].sample)
            await pilot.press("m")
            # Saved blind: the file records the seed shown on screen.
            assert mine(finished_session)[first].blind_seed == int(shown_seed.group(1))
            raw = tomllib.loads(finished_session.read_text("utf-8"))
            assert [
                a["blind_seed"]
                for t in raw["trials"]
                if (t["condition"], t["probe"], t["sample"]) == first
                for a in t["annotations"]
            ] == [seed]
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert screen.revealed
            await pilot.press("escape")
            revealed = str(screen.query_one("#annotate-condition").render())
            assert any(label in revealed for label in labels)
            # Changed after the reveal, seeing the condition: no longer a blind judgement.
            await pilot.press("right", "3")  # scale "malice" = 3 (the same on both runs)
            second = (order[1].condition, order[1].probe, order[1].sample)
            assert mine(finished_session)[second].scores == {"malice": 3}
            assert mine(finished_session)[second].blind_seed is None
            assert mine(finished_session)[first].blind_seed == seed
        return order

    first = asyncio.run(scenario())
    assert first == expected
    assert asyncio.run(scenario()) == expected  # same session, same annotator: same order


def test_annotator_name_is_asked_once_and_saved(
    make_app: Any, finished_session: Path, ui_home: Path
) -> None:
    config_file = ui_home / "config.toml"

    async def scenario() -> None:
        app = make_app(annotate=finished_session, config=Config(path=config_file))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
            await pilot.press(*"ada", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, AnnotateScreen))
            await pilot.press("m")
        assert tomllib.loads(config_file.read_text())["annotator"] == "ada"
        assert any(
            a.annotator == "ada"
            for t in load_session(finished_session).trials
            for a in t.annotations
        )

    asyncio.run(scenario())
