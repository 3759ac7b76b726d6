"""The app's option pass on the real engine: the tiny GGUF scores a session's options.

A host screen does what the Run screen's worker does once sampling ends: the runner, then
`run_options_pass` in the same worker thread, reporting to an `OptionsPassPanel`.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.message import Message
from textual.widgets import ProgressBar, Static

from persona_tui.backends.base import Backend
from persona_tui.models.config import Config
from persona_tui.run.lifecycle import create_session, open_session_for_resume
from persona_tui.run.plan import RunOptions
from persona_tui.run.runner import Runner
from persona_tui.scenario.model import Scenario
from persona_tui.scenario.parse import parse_scenario
from persona_tui.session.store import SessionStore, load_session
from persona_tui.ui.options_pass import (
    OptionsPassFinished,
    OptionsPassPanel,
    OptionsPassProgress,
    OptionsPassStarted,
    run_options_pass,
)
from tests.functional.conftest import one_thread_loader, wait_for
from tests.functional.fake_backend import ScriptedBackend
from tests.scenario_text import OPTIONS_SCENARIO

CELLS = 4  # 2 conditions × 2 probes with options


class PassHost(App[None]):
    """Sampling then the option pass in one thread worker, as the Run screen does."""

    def __init__(
        self, scenario: Scenario, backend: Backend, store: SessionStore, cancel: threading.Event
    ) -> None:
        super().__init__()
        self.scenario, self.backend, self.store, self.cancel = scenario, backend, store, cancel
        self.finished: list[OptionsPassFinished] = []  # bubbled up from the panel

    def compose(self) -> ComposeResult:
        yield OptionsPassPanel()

    def on_mount(self) -> None:
        self.sample_and_score(self.query_one(OptionsPassPanel))

    @work(thread=True, exclusive=True, exit_on_error=False)
    def sample_and_score(self, panel: OptionsPassPanel) -> None:
        status = Runner(self.scenario, self.backend, self.store).run(lambda event: None)
        if status == "complete":
            run_options_pass(self.scenario, self.backend, self.store, panel, self.cancel)

    def on_options_pass_finished(self, message: OptionsPassFinished) -> None:
        self.finished.append(message)


def new_session(tmp_path: Path, backend: Backend) -> tuple[Scenario, SessionStore]:
    scenario = parse_scenario(OPTIONS_SCENARIO, "options.toml")
    options = RunOptions(samples=1, max_tokens=4)
    return scenario, create_session(scenario, backend, options, tmp_path / "s.toml")


def status_text(app: App[Any]) -> str:
    return str(app.query_one(".options-pass-status", Static).render())


def test_the_option_pass_scores_every_cell_and_shows_progress(
    tmp_path: Path, tiny_model: Path
) -> None:
    backend = one_thread_loader(str(tiny_model), Config())
    scenario, store = new_session(tmp_path, backend)
    messages: list[Message] = []

    def hook(message: Message) -> None:
        # A bubbling message reaches the hook at every node it passes: count it once.
        if isinstance(message, OptionsPassStarted | OptionsPassProgress) and not any(
            m is message for m in messages
        ):
            messages.append(message)

    async def run() -> None:
        app = PassHost(scenario, backend, store, threading.Event())
        async with app.run_test(size=(100, 10), message_hook=hook) as pilot:
            await wait_for(pilot, lambda: bool(app.finished))
            await app.workers.wait_for_complete()
            await pilot.pause()
            panel = app.query_one(OptionsPassPanel)
            assert panel.state == "complete" and panel.display
            assert (panel.done, panel.total) == (CELLS, CELLS)
            assert app.query_one(ProgressBar).percentage == 1.0
            assert status_text(app) == f"Answer options scored: {CELLS}/{CELLS} cells · v: results"

    try:
        with store:
            asyncio.run(run())
    finally:
        backend.close()
    started = [m for m in messages if isinstance(m, OptionsPassStarted)]
    assert [(m.done, m.total) for m in started] == [(0, CELLS)]
    progress = [m for m in messages if isinstance(m, OptionsPassProgress)]
    assert progress and progress[-1].done == CELLS  # the last one is never coalesced away
    session = load_session(store.path)
    assert session.header.status == "complete"
    assert len(session.option_cells) == CELLS
    assert all(o.n_tokens > 0 for cell in session.option_cells for o in cell.options)


def test_a_cancelled_pass_leaves_the_session_resumable(tmp_path: Path, tiny_model: Path) -> None:
    backend = one_thread_loader(str(tiny_model), Config())
    scenario, store = new_session(tmp_path, backend)
    cancel = threading.Event()

    def cancel_after_first_cell(message: Message) -> None:
        if isinstance(message, OptionsPassProgress):
            cancel.set()

    async def run() -> None:
        app = PassHost(scenario, backend, store, cancel)
        async with app.run_test(size=(100, 10), message_hook=cancel_after_first_cell) as pilot:
            await wait_for(pilot, lambda: bool(app.finished))
            await pilot.pause()
            assert not app.finished[0].complete
            panel = app.query_one(OptionsPassPanel)
            assert panel.state == "cancelled" and panel.done < CELLS
            assert "resuming the session scores the rest" in status_text(app)

    # A progress message posted from the thread reaches the hook a little later: score slowly.
    original = store.save_option_cell

    def slow_save(cell: Any) -> None:
        original(cell)
        cancel.wait(5)

    store.save_option_cell = slow_save  # type: ignore[method-assign]
    try:
        with store:
            asyncio.run(run())
        done_before = len(load_session(store.path).option_cells)
        assert 0 < done_before < CELLS
        assert load_session(store.path).header.status == "interrupted"
        # Resumed (as Home's r does): the pass scores only what is left.
        scenario2, store2 = open_session_for_resume(store.path)
        with store2:
            asyncio.run(_resume(scenario2, backend, store2))
    finally:
        backend.close()
    session = load_session(store.path)
    assert len(session.option_cells) == CELLS
    assert session.header.status == "complete"


async def _resume(scenario: Scenario, backend: Backend, store: SessionStore) -> None:
    app = PassHost(scenario, backend, store, threading.Event())
    async with app.run_test(size=(100, 10)) as pilot:
        await wait_for(pilot, lambda: bool(app.finished))
        assert app.finished[0].complete
        panel = app.query_one(OptionsPassPanel)
        assert panel.state == "complete" and panel.total == CELLS


def test_a_backend_without_logprobs_is_told_not_failed(tmp_path: Path) -> None:
    backend: Any = ScriptedBackend(["Hi."])
    scenario, store = new_session(tmp_path, backend)

    async def run() -> None:
        app = PassHost(scenario, backend, store, threading.Event())
        async with app.run_test(size=(100, 10)) as pilot:
            await wait_for(pilot, lambda: bool(app.finished))
            await pilot.pause()
            panel = app.query_one(OptionsPassPanel)
            assert panel.state == "skipped"
            assert "options not scored: this backend cannot score options" in status_text(app)

    with store:
        asyncio.run(run())
    assert load_session(store.path).header.status == "complete"  # the sampling is done
