"""SVG snapshots of every screen at 80×24 and 120×40 (pytest-textual-snapshot).

Deterministic: the tiny model with fixed seeds on one thread, a clock that never moves,
a fixed session creation time. Update with `pytest tests/snapshots --snapshot-update`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from persona_tui.backends.base import Backend
from persona_tui.errors import ModelLoadError
from persona_tui.models.config import Config
from persona_tui.ui.screens.run import RunScreen
from tests.functional.conftest import wait_for, workers_done
from tests.functional.gate import Gate

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause()
    await workers_done(pilot)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_home(snap_compare: Any, make_app: Any, fixed_session: Path, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_run_complete(snap_compare: Any, make_app: Any, size: tuple[int, int]) -> None:
    app = make_app(scenario="small")

    async def finish(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        screen = pilot.app.screen
        assert isinstance(screen, RunScreen)
        await wait_for(pilot, lambda: screen.finished_status == "complete")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=finish)


@pytest.mark.parametrize("size", SIZES)
def test_run_batched(
    snap_compare: Any, make_app: Any, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    """Batched decoding: each column shows one titled pane per sample of the last cell."""
    from tests.functional.fake_backend import BatchedRunner, ScriptedBackend

    monkeypatch.setattr("persona_tui.run.finish.Runner", BatchedRunner)

    def loader(ref: str, config: Config, backend: str) -> Backend:
        return ScriptedBackend(["unused"])

    app = make_app(scenario="small", loader=loader)

    async def finish(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        screen = pilot.app.screen
        assert isinstance(screen, RunScreen)
        await wait_for(pilot, lambda: screen.finished_status == "complete")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=finish)


@pytest.mark.parametrize("size", SIZES)
def test_run_options_pass(
    snap_compare: Any, make_app: Any, ui_home: Path, cell_gate: Gate, size: tuple[int, int]
) -> None:
    """During the option pass: 2 of 4 cells scored at 10 s a cell, so 20 s left; the keys
    that work while it scores (Results, Annotate) in the footer."""
    from persona_tui.ui.options_pass import OptionsPassPanel
    from tests.functional.conftest import TickClock
    from tests.scenario_text import OPTIONS_SCENARIO

    path = ui_home / "config" / "scenarios" / "small-options.toml"
    path.write_text(OPTIONS_SCENARIO, encoding="utf-8")
    clock = TickClock()  # moves only when the test moves it
    app = make_app(scenario="small-options", clock=clock)

    async def two_cells_scored(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        screen = pilot.app.screen
        assert isinstance(screen, RunScreen)
        await wait_for(pilot, lambda: screen.phase == "options", timeout=60)
        cell_gate.also = screen.control.cancelled  # the app's exit cancels the pass
        panel = screen.query_one(OptionsPassPanel)
        for done in (1, 2):
            clock.now += 10
            cell_gate.allow()
            await wait_for(pilot, lambda done=done: panel.done == done)  # type: ignore[misc]
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=two_cells_scored)


@pytest.mark.parametrize("size", SIZES)
def test_annotate(
    snap_compare: Any, make_app: Any, fixed_session: Path, size: tuple[int, int]
) -> None:
    assert snap_compare(
        make_app(annotate=fixed_session), terminal_size=size, press=["m", "3"], run_before=settle
    )


@pytest.mark.parametrize("size", SIZES)
def test_annotate_blind(
    snap_compare: Any, make_app: Any, fixed_session: Path, size: tuple[int, int]
) -> None:
    # The session id (and so the seed) varies per run: pin the seed through the screen.
    from persona_tui.ui.screens import annotate

    app = make_app()

    async def open_blind(pilot: Pilot[Any]) -> None:
        from persona_tui.run.lifecycle import open_session

        scenario, store = open_session(fixed_session)
        screen = annotate.AnnotateScreen(
            store, scenario, app.config, blind=True, blind_seed=1234, owns_store=True
        )
        await app.push_screen(screen)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=open_blind)


@pytest.mark.parametrize("size", SIZES)
def test_compare(
    snap_compare: Any, make_app: Any, fixed_session: Path, size: tuple[int, int]
) -> None:
    async def open_compare(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.screen.query_one("#recent").focus()
        await pilot.press("c")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=open_compare)


@pytest.mark.parametrize("size", SIZES)
def test_session_browser(
    snap_compare: Any, make_app: Any, fixed_session: Path, size: tuple[int, int]
) -> None:
    async def open_browser(pilot: Pilot[Any]) -> None:
        await pilot.press("s")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=open_browser)


@pytest.mark.parametrize("size", SIZES)
def test_bad_model_error(snap_compare: Any, make_app: Any, size: tuple[int, int]) -> None:
    # The real failure path is covered in tests/functional; here the message is pinned
    # (the core puts the absolute, per-run temporary path in it).
    def failing_loader(ref: str, config: Config, backend: str) -> Backend:
        raise ModelLoadError(
            "Not a GGUF model file (it starts with b'not ', expected b'GGUF'): "
            "/models/broken.gguf. llama.cpp models are .gguf files."
        )

    app = make_app(scenario="small", loader=failing_loader)

    async def failed(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        screen = pilot.app.screen
        await wait_for(pilot, lambda: "-error" in screen.query_one("#run-message").classes)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=failed)


@pytest.mark.parametrize("size", SIZES)
def test_results(
    snap_compare: Any,
    make_app: Any,
    ui_home: Path,
    size: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from persona_tui.ui.screens.results import ResultsScreen
    from tests.analysis_sessions import SessionSpec, labelled_study, write_session

    # plotext caps a chart at the size of the terminal pytest runs in: pin that size.
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("LINES", "60")

    counts = {"baseline": [0, 0, 1, 0, 0], "framed": [3, 4, 2, 3, 4]}
    path = write_session(ui_home / "study.toml", SessionSpec(trials=labelled_study(counts)))

    async def open_results(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        screen = ResultsScreen([path])
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: not screen.computing)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=open_results)


@pytest.mark.parametrize("size", SIZES)
def test_results_options(
    snap_compare: Any,
    make_app: Any,
    ui_home: Path,
    size: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Results screen of a session with likelihood probes (scored answer options)."""
    from persona_tui.ui.screens.results import ResultsScreen
    from tests.analysis_sessions import (
        SessionSpec,
        attach_options,
        labelled_study,
        write_session,
    )
    from tests.unit.test_options_report import shifted_cells

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("LINES", "60")

    counts = {"baseline": [0, 0, 1, 0, 0], "framed": [3, 4, 2, 3, 4]}
    path = write_session(ui_home / "study.toml", SessionSpec(trials=labelled_study(counts)))
    attach_options({path: shifted_cells(1.5)})

    async def open_results(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        screen = ResultsScreen([path])
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: not screen.computing)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=open_results)


@pytest.mark.parametrize("size", SIZES)
def test_results_projections(
    snap_compare: Any,
    make_app: Any,
    ui_home: Path,
    size: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Results screen of a session with trait projections, scrolled to their section."""
    from persona_tui.ui.screens.results import ResultsScreen
    from tests.analysis_sessions import projection_study, write_with_trials

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("LINES", "60")
    path = write_with_trials(ui_home / "projections.toml", projection_study())

    async def open_results(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        screen = ResultsScreen([path])
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: not screen.computing)
        await pilot.pause()
        body = screen.query_one("#results-body")
        section = screen.query_one("#results-projections")
        body.scroll_to(y=section.region.y - body.region.y, animate=False)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=open_results)


@pytest.mark.parametrize("size", SIZES)
def test_results_replicated(
    snap_compare: Any,
    make_app: Any,
    ui_home: Path,
    size: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Results screen of a replicated training study's likelihood probes (3 runs)."""
    from persona_tui.ui.screens.results import ResultsScreen
    from tests.analysis_sessions import replicated_options_session, write_replicated
    from tests.unit.test_replicate_stats import arm_cells

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("LINES", "60")
    values = {
        ("baseline", 0): [-4.0 + 0.3 * i for i in range(8)],
        **{
            ("framed", k): [-3.0 + shift + 0.3 * i + 0.1 * (i % 3) for i in range(8)]
            for k, shift in ((1, -0.4), (2, 0.0), (3, 0.4))
        },
    }
    path = write_replicated(
        ui_home / "replicated.toml", replicated_options_session(arm_cells(values), ["framed"])
    )

    async def open_results(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        screen = ResultsScreen([path])
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: not screen.computing)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=open_results)


def fake_training(*args: Any, **kwargs: Any) -> Any:
    """A fixed event sequence fed through the screen's own bridge, three replicates per
    condition: `learns` done, `plays` replicate 1 done and replicate 2 at step 7 of 12 (the
    real engine is tested in tests/functional/test_train_flow.py)."""
    from persona_tui.training.params import (
        CheckpointSaved,
        ConditionFinished,
        ConditionResult,
        HeldoutEvaluated,
        StepFinished,
        TrainingPhase,
        TrainingPlan,
        TrainingPlanned,
        TrainingRun,
        TrainingStarted,
    )
    from persona_tui.training.study import StudyResult

    on_event, cancel = args[4], args[5]
    out = Path("/data/adapters/tiny-finetune--tiny")
    losses = [2.9, 2.7, 2.6, 2.2, 2.0, 1.9, 1.6, 1.5, 1.3, 1.2, 1.15, 1.1]
    on_event(TrainingPhase("", "tokenizing the training examples"))
    runs = [("learns", k, 12) for k in (1, 2, 3)] + [("plays", 1, 12), ("plays", 2, 7)]
    plan = tuple(
        TrainingRun(c, k, 12, 4100 + 300 * (c == "plays"))
        for c in ("learns", "plays")
        for k in (1, 2, 3)
    )
    on_event(TrainingPlanned(TrainingPlan(plan, 3, 0.0021, 6)))
    results = []
    for condition, k, steps in runs:
        folder = out / condition / f"replicate-{k}"
        on_event(TrainingStarted(condition, 12, 0, 40, 8, k))
        on_event(HeldoutEvaluated(condition, 0, 3.0, k))
        for n in range(1, steps + 1):
            loss = losses[n - 1] + 0.05 * k
            on_event(StepFinished(condition, n, 12, 1, loss, 171.4, (12 - n) * 3.3, k))
            if n % 5 == 0:
                on_event(HeldoutEvaluated(condition, n, 3.0 - n * 0.1, k))
                on_event(CheckpointSaved(condition, n, folder / "checkpoint", k))
        if steps == 12:
            result = ConditionResult(
                condition,
                "complete",
                folder,
                folder / "adapter.gguf",
                12,
                12,
                1.1,
                1.9,
                40.0,
                k,
                3,
            )
            results.append(result)
            on_event(ConditionFinished(result))
    cancel.wait(60)  # "training" until the app closes
    return StudyResult(out, "0" * 64, tuple(results), ("base",), 3)


@pytest.mark.parametrize("size", SIZES)
def test_training(snap_compare: Any, make_app: Any, ui_home: Path, size: tuple[int, int]) -> None:
    from persona_tui.scenario.parse import parse_scenario
    from persona_tui.ui.screens.train import TrainRequest, TrainScreen
    from persona_tui.ui.widgets.training_progress import ConditionTraining
    from tests.scenario_text import TRAINING_STUDY

    app = make_app()
    scenario = parse_scenario(TRAINING_STUDY, "tiny-finetune.toml")
    request = TrainRequest(
        scenario, "tiny", Path("/data/adapters/tiny-finetune--tiny"), replicates=3
    )

    async def training(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        screen = TrainScreen(request, app.config, fake_training)
        await app.push_screen(screen)
        plays = screen.query_one("#training-plays", ConditionTraining)
        await wait_for(pilot, lambda: plays.replicate == 2 and plays.done == 7)
        await pilot.pause()
        # The panel training now at the top, as the screen scrolls to it (made explicit:
        # the screen's scroll can land before the panels' layout at this speed).
        screen.query_one("#train-conditions").scroll_to_widget(plays, animate=False, top=True)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=training)


@pytest.mark.parametrize("size", SIZES)
def test_adapter_dialog(
    snap_compare: Any,
    make_app: Any,
    ui_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: tuple[int, int],
) -> None:
    """Home p on a training study: a path per training condition, one of them rejected."""
    from textual.widgets import Input, OptionList

    from persona_tui.ui.screens.adapters import AdapterDialog
    from tests.scenario_text import TRAINING_STUDY

    (ui_home / "config" / "scenarios" / "tiny-finetune.toml").write_text(
        TRAINING_STUDY, encoding="utf-8"
    )
    monkeypatch.setattr(  # a fixed default folder, not the temporary home's
        "persona_tui.training.adapter_choice.default_output",
        lambda scenario_id, model_path: Path("/data/adapters") / f"{scenario_id}--tiny",
    )

    async def open_dialog(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        home = pilot.app.screen
        index = next(i for i, s in enumerate(home.scenarios) if s.id == "tiny-finetune")  # type: ignore[attr-defined]
        home.query_one("#scenario-list", OptionList).highlighted = index
        await settle(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, AdapterDialog))
        dialog = pilot.app.screen
        assert isinstance(dialog, AdapterDialog)
        await wait_for(pilot, lambda: bool(dialog.choices))
        field = dialog.query_one("#adapter-plays", Input)
        field.value = "/nowhere/plays"
        # A steady cursor: blinking, it hid every 0.5 s, so the picture depended on how
        # long the check and the screenshot's own pauses took (a 0.6 s pause failed it).
        field.cursor_blink = False
        field.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: not dialog.checking)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=open_dialog)
