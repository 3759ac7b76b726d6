"""The Training screen on the real engine: the tiny GGUF trained a few steps with torch.

Home → t trains a tiny training study; cancel keeps a checkpoint and t resumes from it;
a missing library and bad data are shown as one plain message.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")

from textual.widgets import OptionList, ProgressBar, Sparkline, Static  # noqa: E402

from persona_tui.scenario.parse import load_scenario  # noqa: E402
from persona_tui.training.params import StepFinished, TrainingEvent, TrainingParams  # noqa: E402
from persona_tui.training.record import read_loss_curve  # noqa: E402
from persona_tui.ui.screens.home import HomeScreen  # noqa: E402
from persona_tui.ui.screens.train import (  # noqa: E402
    TrainRequest,
    TrainScreen,
    run_train_study,
)
from persona_tui.ui.train_bridge import TrainingSteps  # noqa: E402
from persona_tui.ui.widgets.training_progress import ConditionTraining  # noqa: E402
from tests.functional.conftest import wait_for  # noqa: E402
from tests.unit.test_training import study_text  # noqa: E402

torch.set_num_threads(1)

PARAMS = TrainingParams(max_steps=4, lr=1e-2, batch_size=2, checkpoint_every=2, threads=1)
TIMEOUT = 240  # the first test converts the tiny GGUF's weights


@pytest.fixture
def study(ui_home: Path) -> Path:
    path = ui_home / "config" / "scenarios" / "tiny-finetune.toml"
    path.write_text(study_text(), encoding="utf-8")
    return path


def message_text(screen: TrainScreen) -> str:
    return str(screen.query_one("#train-message", Static).render())


def panels(screen: TrainScreen) -> dict[str, ConditionTraining]:
    return {p.condition.id: p for p in screen.query(ConditionTraining)}


def test_home_t_trains_the_study_and_shows_the_adapters(
    make_app: Any, study: Path, ui_home: Path
) -> None:
    async def scenario() -> None:
        steps: list[TrainingSteps] = []
        app = make_app()

        def hook(message: object) -> None:
            if isinstance(message, TrainingSteps):
                steps.append(message)

        async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
            await pilot.pause()
            options = app.screen.query_one("#scenario-list", OptionList)
            home = app.screen
            assert isinstance(home, HomeScreen)
            index = next(i for i, s in enumerate(home.scenarios) if s.id == "tiny-finetune")
            options.highlighted = index
            await pilot.pause()
            await pilot.press("t")
            await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen))
            screen = app.screen
            assert isinstance(screen, TrainScreen)
            await wait_for(pilot, lambda: screen.status in ("complete", "error"), TIMEOUT)
            await pilot.pause()
            assert screen.status == "complete", message_text(screen)
            out = ui_home / "data" / "adapters" / "tiny-finetune--tiny"
            assert screen.out == out
            shown = panels(screen)
            assert list(shown) == ["learns", "plays"]  # the base condition gets no adapter
            for condition, panel in shown.items():
                adapter = out / condition / "replicate-1" / "adapter.gguf"
                assert adapter.is_file()
                assert panel.status == "complete"
                assert panel.done == panel.total == 2  # 7 examples, batch 4, one epoch
                assert panel.adapter_notice == f"adapter: {adapter}"
                assert len(panel.losses) == 2
                assert panel.query_one(Sparkline).data == panel.losses
                figures = str(panel.query_one(".training-figures", Static).render())
                assert figures.startswith("step 2/2") and "loss " in figures
                assert "held-out " in figures and "tok/s" in figures
                assert str(adapter) in message_text(screen)
            assert "Adapters ready" in message_text(screen)
            # Finished: t no longer trains, escape goes back to Home.
            assert screen.check_action("train", ()) is False
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, TrainScreen)
        assert steps and all(len({s.condition for s in m.steps}) == 1 for m in steps)

    asyncio.run(scenario())


def test_cancel_keeps_the_checkpoint_and_t_resumes(
    make_app: Any, study: Path, tmp_path: Path
) -> None:
    gate = threading.Event()

    def trainer_paused_at_step_1(*args: Any, **kwargs: Any) -> Any:
        """The real trainer; at step 1 of the first run it waits until the test pressed c."""
        scenario, model_path, out, params, on_event, cancel = args

        def on_event_paused(event: TrainingEvent) -> None:
            on_event(event)
            if isinstance(event, StepFinished) and event.step == 1 and not gate.is_set():
                assert gate.wait(60)

        return run_train_study(scenario, model_path, out, params, on_event_paused, cancel, **kwargs)

    async def scenario() -> None:
        app = make_app()
        out = tmp_path / "adapters"
        request = TrainRequest(load_scenario(study), "tiny", out, PARAMS, conditions=("learns",))
        screen = TrainScreen(request, app.config, trainer_paused_at_step_1)
        async with app.run_test(size=(100, 30)) as pilot:
            await app.push_screen(screen)
            panel = panels(screen)["learns"]
            assert list(panels(screen)) == ["learns"]
            await wait_for(pilot, lambda: panel.done == 1, TIMEOUT)
            assert screen.check_action("back", ()) is False  # escape cancels while training
            await pilot.press("c")
            assert screen.cancel.is_set()
            gate.set()
            await wait_for(pilot, lambda: not screen.running, TIMEOUT)
            await pilot.pause()
            assert screen.status == "interrupted", message_text(screen)
            assert panel.status == "interrupted" and panel.done == 1
            run = out / "learns" / "replicate-1"
            assert (run / "checkpoint" / "state.pt").is_file()
            assert not (run / "adapter.gguf").exists()
            text = message_text(screen)
            assert "Stopped at step 1/4 of learns;" in text
            assert str(run / "checkpoint") in text
            assert "Press t to resume" in text and "persona-tui train" in text
            assert panel.adapter_notice == f"checkpoint kept: {run / 'checkpoint'}"

            await pilot.press("t")
            await pilot.pause()
            assert screen.status in ("resuming", "complete"), (screen.status, screen.running)
            await wait_for(pilot, lambda: not screen.running, TIMEOUT)
            await pilot.pause()
            assert screen.status == "complete", message_text(screen)
            assert panel.status == "complete" and panel.done == panel.total == 4
            assert len(panel.losses) == 4  # the chart keeps the steps before the cancel
            assert (run / "adapter.gguf").is_file()
            assert not (run / "checkpoint").exists()

    asyncio.run(scenario())


def test_a_resumed_study_on_a_new_screen_shows_the_earlier_curve(
    make_app: Any, study: Path, tmp_path: Path
) -> None:
    out = tmp_path / "adapters"
    scenario_ = load_scenario(study)
    cancel = threading.Event()

    def cancel_at_step_2(event: TrainingEvent) -> None:
        if isinstance(event, StepFinished) and event.step == 2:
            cancel.set()

    async def scenario() -> None:
        app = make_app()
        model = app.config.models["tiny"].path
        # Cancelled outside the app (as `persona-tui train` + Ctrl-C would leave it).
        run_train_study(
            scenario_, model, out, PARAMS, cancel_at_step_2, cancel, conditions=["plays"]
        )
        assert (out / "plays" / "replicate-1" / "checkpoint").is_dir()
        earlier = read_loss_curve(out / "plays" / "replicate-1")
        assert len(earlier) == 2
        request = TrainRequest(scenario_, "tiny", out, PARAMS, conditions=("plays",))
        screen = TrainScreen(request, app.config)
        async with app.run_test(size=(100, 30)) as pilot:
            await app.push_screen(screen)
            await wait_for(pilot, lambda: screen.status in ("complete", "error"), TIMEOUT)
            await pilot.pause()
            panel = panels(screen)["plays"]
            assert screen.status == "complete", message_text(screen)
            assert panel.done == 4 and len(panel.losses) == 4  # 2 read from loss.csv
            assert panel.losses[:2] == earlier

    asyncio.run(scenario())


def test_replicates_show_in_one_panel_per_condition(
    make_app: Any, study: Path, tmp_path: Path
) -> None:
    """Two replicates of one condition at 80×24: the panel names the replicate training
    now, counts the runs done and fills the condition's overall bar; the line under the
    title gives the estimate once the first step is measured; p probes replicate 1."""

    async def scenario() -> None:
        app = make_app()
        out = tmp_path / "adapters"
        params = TrainingParams(max_steps=2, lr=1e-2, batch_size=2, checkpoint_every=5, threads=1)
        request = TrainRequest(load_scenario(study), "tiny", out, params, ("plays",), replicates=2)
        screen = TrainScreen(request, app.config)
        async with app.run_test(size=(80, 24)) as pilot:
            await app.push_screen(screen)
            await wait_for(pilot, lambda: screen.status in ("complete", "error"), TIMEOUT)
            await pilot.pause()
            assert screen.status == "complete", message_text(screen)
            panel = panels(screen)["plays"]
            assert panel.replicates == 2 and panel.replicate == 2
            assert panel.runs_done == {1: 2, 2: 2} and panel.status == "complete"
            assert "replicate 2/2" in str(panel.border_title)
            assert str(panel.border_subtitle) == "2/2 runs done · complete"
            overall = panel.query_one(".training-overall > ProgressBar", ProgressBar)
            assert (overall.progress, overall.total) == (4, 4)
            assert screen.plan_text.startswith("est. ")  # measured by the first step
            assert "2 runs (1 condition × 2 replicates) · 2 steps" in screen.plan_text
            text = message_text(screen)
            for k in (1, 2):
                adapter = out / "plays" / f"replicate-{k}" / "adapter.gguf"
                assert adapter.is_file() and f"plays replicate {k}/2: {adapter}" in text
            assert screen.trained_adapters() == {"plays": out / "plays"}
            assert screen.check_action("probe", ()) is True

    asyncio.run(scenario())


def test_missing_torch_is_one_plain_line(
    make_app: Any, study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.import_module

    def without_torch(name: str, package: str | None = None) -> Any:
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", without_torch)

    async def scenario() -> None:
        app = make_app()
        request = TrainRequest(load_scenario(study), "tiny", tmp_path / "out", PARAMS)
        screen = TrainScreen(request, app.config)
        async with app.run_test(size=(100, 30)) as pilot:
            await app.push_screen(screen)
            await wait_for(pilot, lambda: screen.status == "error")
            await pilot.pause()
            text = message_text(screen)
            assert "training needs the 'torch' package (the train extra): " in text
            assert "pip install 'persona-tui[train]'" in text
            assert "Traceback" not in text and "unexpected" not in text
            assert screen.check_action("train", ()) is True  # t tries again
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is not screen

    asyncio.run(scenario())


def test_bad_data_names_the_file(make_app: Any, study: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        app = make_app()
        too_short = TrainingParams(max_steps=1, batch_size=2, threads=1, max_tokens=5)
        request = TrainRequest(load_scenario(study), "tiny", tmp_path / "out", too_short)
        screen = TrainScreen(request, app.config)
        async with app.run_test(size=(100, 30)) as pilot:
            await app.push_screen(screen)
            await wait_for(pilot, lambda: screen.status == "error", TIMEOUT)
            await pilot.pause()
            text = message_text(screen)
            assert "tiny-finetune.toml:" in text and "more than the 5 allowed" in text
            assert "Traceback" not in text

    asyncio.run(scenario())
