"""Fixtures for the app's Pilot tests: an isolated home folder, the tiny GGUF, a scenario."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from persona_tui.backends.base import Backend
from persona_tui.models.config import Config
from persona_tui.models.load import load_model
from persona_tui.models.refs import ModelRef
from persona_tui.session.store import SessionStore
from persona_tui.ui.app import PersonaApp, create_app
from tests.functional.gate import Gate, gated
from tests.scenario_text import SMALL_SCENARIO


class TickClock:
    """A deterministic clock: every reading advances by `step` seconds."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture(scope="session")
def tiny_model(tiny_gguf: Path) -> Path:
    """The tiny random-weight llama GGUF of tests/conftest.py (no chat template: transcript)."""
    return tiny_gguf


@pytest.fixture
def ui_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PERSONA_TUI_HOME in a temporary folder, holding the small scenario as a user scenario."""
    home = tmp_path / "home"
    monkeypatch.setenv("PERSONA_TUI_HOME", str(home))
    scenarios = home / "config" / "scenarios"
    scenarios.mkdir(parents=True)
    (scenarios / "small.toml").write_text(SMALL_SCENARIO, encoding="utf-8")
    return home


@pytest.fixture
def make_app(ui_home: Path, tiny_model: Path) -> Iterator[Callable[..., PersonaApp]]:
    """Build the app as the CLI does, with a test config (tiny model, annotator "tester")."""

    def build(**kwargs: Any) -> PersonaApp:
        config = kwargs.pop("config", None) or Config(
            default_model="tiny",
            annotator="tester",
            models={"tiny": ModelRef(name="tiny", path=tiny_model, source="config")},
            path=ui_home / "config.toml",
        )
        kwargs.setdefault("clock", TickClock())
        kwargs.setdefault("persist_theme", False)
        kwargs.setdefault("loader", one_thread_loader)
        return create_app(config=config, **kwargs)

    yield build


def one_thread_loader(ref: str, config: Config, backend: str = "auto") -> Backend:
    """Load like the app does, on one thread (the test machine has few cores)."""
    return load_model(ref, config, 1, backend)


async def wait_for(pilot: Pilot[Any], predicate: Callable[[], bool], timeout: float = 30) -> None:
    """Let the app run until `predicate()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await pilot.pause(0.02)


async def workers_done(pilot: Pilot[Any]) -> None:
    """Wait until the app's workers have ended, those started meanwhile included.

    Like `app.workers.wait_for_complete()` (a worker that failed fails the test), except
    that a worker cancelled meanwhile is no error: an exclusive worker is cancelled by the
    next one of its group (Home's adapter check as the highlight moves), and whether that
    happened during the wait depended on timing (WorkerCancelled, seen under load).
    """
    while workers := [w for w in pilot.app.workers if not w.is_finished]:
        ends = await asyncio.gather(*(w.wait() for w in workers), return_exceptions=True)
        for end in ends:
            if isinstance(end, BaseException) and not isinstance(end, WorkerCancelled):
                raise end


def sessions_in(home: Path) -> list[Path]:
    return sorted((home / "data" / "sessions").glob("*.toml"))


@pytest.fixture
def finished_session(ui_home: Path, tiny_model: Path) -> Path:
    """A complete session of the small scenario, run on the tiny model with the core API."""
    from persona_tui.run.lifecycle import create_session
    from persona_tui.run.plan import RunOptions
    from persona_tui.run.runner import Runner
    from persona_tui.scenario.parse import load_scenario

    scenario = load_scenario(ui_home / "config" / "scenarios" / "small.toml")
    backend = one_thread_loader(str(tiny_model), Config())
    try:
        store = create_session(scenario, backend, RunOptions(), None)
        with store:
            Runner(scenario, backend, store).run(lambda event: None)
    finally:
        backend.close()
    return store.path


@pytest.fixture
def cell_gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """Every option cell's save waits for the test's `allow` (tests/functional/gate.py)."""
    gate = Gate()
    monkeypatch.setattr(
        SessionStore, "save_option_cell", gated(gate, SessionStore.save_option_cell)
    )
    yield gate
    gate.open.set()  # never leave the worker waiting
