"""Choosing a training study's adapters in the app: Home p, the dialog, the run.

The dialog and Home's adapter lines are checked on hand-made adapter folders (an
adapter.gguf and its training.toml, checked as `persona-tui run --adapters` checks them);
the run getting the chosen adapters uses tiny adapters trained on the tiny GGUF and the
real llama.cpp backend.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, OptionList, Static

from persona_tui._util.hashing import sha256_file
from persona_tui.session.model import Arm
from persona_tui.ui.screens.adapters import AdapterDialog
from persona_tui.ui.screens.home import HomeScreen
from persona_tui.ui.screens.run import RunScreen
from tests.functional.conftest import wait_for, workers_done
from tests.scenario_text import TRAINING_STUDY


@pytest.fixture
def study(ui_home: Path) -> Path:
    path = ui_home / "config" / "scenarios" / "tiny-finetune.toml"
    path.write_text(TRAINING_STUDY, encoding="utf-8")
    return path


def fake_adapter(folder: Path, condition: str, base_sha256: str, steps: int = 4) -> Path:
    """A condition folder as `persona-tui train` leaves it (the adapter bytes are not real)."""
    folder.mkdir(parents=True, exist_ok=True)
    adapter = folder / "adapter.gguf"
    adapter.write_bytes(f"not a real adapter: {condition}".encode())
    digest = hashlib.sha256(adapter.read_bytes()).hexdigest()
    (folder / "training.toml").write_text(
        f'version = 1\n[condition]\nid = "{condition}"\n[base_model]\nsha256 = "{base_sha256}"\n'
        f'[result]\nsteps = {steps}\n[adapter]\nsha256 = "{digest}"\n',
        encoding="utf-8",
    )
    return adapter


async def open_home_on_study(pilot: Any) -> HomeScreen:
    await pilot.pause()
    home = pilot.app.screen
    assert isinstance(home, HomeScreen)
    index = next(i for i, s in enumerate(home.scenarios) if s.id == "tiny-finetune")
    home.query_one("#scenario-list", OptionList).highlighted = index
    await pilot.pause()
    await workers_done(pilot)
    await pilot.pause()
    return home


async def open_dialog(pilot: Any) -> AdapterDialog:
    await pilot.press("p")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, AdapterDialog))
    dialog = pilot.app.screen
    assert isinstance(dialog, AdapterDialog)
    await wait_for(pilot, lambda: bool(dialog.choices))
    return dialog


def home_text(home: HomeScreen) -> str:
    return str(home.query_one("#scenario-text", Static).render())


def state_text(dialog: AdapterDialog, condition: str) -> str:
    return str(dialog.query_one(f"#adapter-state-{condition}", Static).render())


def test_home_p_chooses_a_folder_per_condition(
    make_app: Any, study: Path, ui_home: Path, tiny_model: Path, tmp_path: Path
) -> None:
    chosen = fake_adapter(tmp_path / "elsewhere" / "learns", "learns", sha256_file(tiny_model))
    default = ui_home / "data" / "adapters" / "tiny-finetune--tiny"

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            home = await open_home_on_study(pilot)
            text = home_text(home)
            assert "learns: missing: train first" in text and "plays: missing" in text
            dialog = await open_dialog(pilot)
            # Prefilled with train's default folder, one input per training condition.
            inputs = {i.id: i.value for i in dialog.query(Input)}
            assert inputs == {
                "adapter-learns": str(default / "learns"),
                "adapter-plays": str(default / "plays"),
            }
            assert state_text(dialog, "learns") == "missing: train first"
            dialog.query_one("#adapter-learns", Input).value = str(chosen.parent)
            dialog.query_one("#adapter-learns", Input).focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is home)
            assert home.adapters == {"tiny-finetune": {"learns": chosen.parent}}
            await workers_done(pilot)
            await pilot.pause()
            text = home_text(home)
            digest = sha256_file(chosen)[:12]
            assert f"learns (chosen): {chosen} · 4 steps · sha256 {digest}" in text
            assert "plays: missing: train first" in text
            # Opened again, the dialog shows the choice.
            dialog = await open_dialog(pilot)
            assert dialog.query_one("#adapter-learns", Input).value == str(chosen.parent)
            assert f"sha256 {digest}" in state_text(dialog, "learns")
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is home)
            assert home.adapters == {"tiny-finetune": {"learns": chosen.parent}}

    asyncio.run(scenario())


def test_a_bad_path_or_adapter_shows_the_cli_sentence_inline(
    make_app: Any, study: Path, tiny_model: Path, tmp_path: Path
) -> None:
    wrong_model = fake_adapter(tmp_path / "other-model" / "plays", "plays", "ab" * 32)
    wrong_condition = fake_adapter(tmp_path / "swapped" / "learns", "learns", "")

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            home = await open_home_on_study(pilot)
            dialog = await open_dialog(pilot)
            field = dialog.query_one("#adapter-learns", Input)
            field.value = str(tmp_path / "nowhere")
            field.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: not dialog.checking)
            await pilot.pause()
            assert app.screen is dialog  # not accepted
            text = state_text(dialog, "learns")
            assert text.startswith(f"--adapters learns={tmp_path / 'nowhere'}: no such adapter")
            dialog.query_one("#adapter-learns", Input).value = ""  # back to the default
            dialog.query_one("#adapter-plays", Input).value = str(wrong_model.parent)
            await pilot.press("enter")
            await wait_for(pilot, lambda: not dialog.checking)
            await pilot.pause()
            assert app.screen is dialog
            assert "was trained on another base model" in state_text(dialog, "plays")
            assert state_text(dialog, "learns") == "missing: train first"
            dialog.query_one("#adapter-plays", Input).value = str(wrong_condition)
            await pilot.press("enter")
            await wait_for(pilot, lambda: not dialog.checking)
            await pilot.pause()
            assert "was trained for condition 'learns'" in state_text(dialog, "plays")
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is home)
            assert home.adapters == {}

    asyncio.run(scenario())


def test_the_run_probes_the_chosen_adapters(
    make_app: Any, study: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """Real adapters trained on the tiny GGUF, chosen in the dialog, probed by llama.cpp."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    pytest.importorskip("transformers")
    from persona_tui.scenario.parse import load_scenario
    from persona_tui.session.read import read_session_file
    from persona_tui.training.params import TrainingParams
    from persona_tui.training.study import train_study

    torch.set_num_threads(1)
    params = TrainingParams(max_steps=2, lr=1e-2, batch_size=2, checkpoint_every=2, threads=1)
    out = tmp_path / "trained"
    assert train_study(load_scenario(study), tiny_model, out, params).complete

    # A replicate's folder (OUT/<condition>/replicate-<k>) or its adapter, as the user names it.
    learns, plays = out / "learns" / "replicate-1", out / "plays" / "replicate-1"

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            home = await open_home_on_study(pilot)
            dialog = await open_dialog(pilot)
            dialog.query_one("#adapter-learns", Input).value = str(learns)
            dialog.query_one("#adapter-plays", Input).value = str(plays / "adapter.gguf")
            dialog.query_one("#adapter-learns", Input).focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is home, 60)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            assert isinstance(screen, RunScreen)
            assert dict(screen.request.adapters) == {
                "learns": learns,
                "plays": plays / "adapter.gguf",
            }
            await wait_for(pilot, lambda: screen.finished_status == "complete", 120)
            assert screen.store is not None
            path = screen.store.path
        session = read_session_file(path)
        # One run each (a replicate folder, an adapter): replicate 0.
        assert session.header.adapter_paths() == {
            Arm("learns"): str(learns / "adapter.gguf"),
            Arm("plays"): str(plays / "adapter.gguf"),
        }

    asyncio.run(scenario())


def test_after_training_p_probes_exactly_the_trained_adapters(
    make_app: Any, study: Path, tmp_path: Path
) -> None:
    from persona_tui.scenario.parse import load_scenario
    from persona_tui.training.conditions import StudyResult
    from persona_tui.training.params import ConditionResult
    from persona_tui.ui.screens.train import TrainRequest, TrainScreen

    out = tmp_path / "somewhere"
    # p probes each condition's folder: the run takes every training run's adapter in it.
    adapters = {c: out / c for c in ("learns", "plays")}

    def trainer(*args: Any, **kwargs: Any) -> StudyResult:
        results = tuple(
            ConditionResult(
                c,
                "complete",
                a / "replicate-1",
                a / "replicate-1" / "adapter.gguf",
                2,
                2,
                1.0,
                1.5,
                1.0,
            )
            for c, a in adapters.items()
        )
        return StudyResult(out, "0" * 64, results, ("base",))

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            request = TrainRequest(load_scenario(study), "tiny", out)
            screen = TrainScreen(request, app.config, trainer)
            assert screen.check_action("probe", ()) is False
            await app.push_screen(screen)
            await wait_for(pilot, lambda: screen.status == "complete")
            await pilot.pause()
            assert "p: probe the study with exactly these adapters" in str(
                screen.query_one("#train-message", Static).render()
            )
            assert screen.check_action("probe", ()) is True
            await pilot.press("p")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            run = app.screen
            assert isinstance(run, RunScreen)
            assert dict(run.request.adapters) == adapters
            assert run.request.model == str(screen.model_path)
            assert screen not in app.screen_stack
            await workers_done(pilot)  # the fake adapters cannot load: an error
            await pilot.pause()

    asyncio.run(scenario())
