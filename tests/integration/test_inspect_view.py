"""`inspect view` (Inspect's own log viewer, a real server process on loopback) lists and
serves the logs `persona-tui export --format inspect` writes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.analysis_sessions import SessionSpec, TrialSpec, annotation, write_session

pytest.importorskip("inspect_ai.log")

INSPECT = Path(sys.executable).with_name("inspect")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Exported logs in a folder and `inspect view` serving it; the server is always killed."""
    from persona_tui.analysis.inspect_export import export_inspect

    trials = [
        TrialSpec("baseline", "p1", 0, response="Kind.", annotations=(annotation("alice", "ok"),)),
        TrialSpec(
            "framed", "p1", 0, response="Cruel.", annotations=(annotation("alice", "cruel"),)
        ),
    ]
    session = write_session(tmp_path / "s.toml", SessionSpec(trials=trials))
    logs = tmp_path / "logs"
    export_inspect([session], logs, use_cache=False)
    if not INSPECT.exists():
        pytest.skip(f"no `inspect` command beside {sys.executable}")
    port = _free_port()
    process = subprocess.Popen(
        [str(INSPECT), "view", "--host", "127.0.0.1", "--port", str(port), "--log-dir", str(logs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: killed with any children it starts
        env={**os.environ, "INSPECT_LOG_LEVEL": "warning"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"inspect view exited with {process.returncode}: {stderr[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/api/log-files", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail("inspect view did not answer within 60 s")
                time.sleep(0.2)
        yield base, logs
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_inspect_view_lists_and_serves_the_exported_logs(viewer: tuple[str, Path]) -> None:
    base, logs = viewer
    listing = _get(base + "/api/log-files")
    assert isinstance(listing, dict)
    names = sorted(Path(urllib.parse.urlparse(f["name"]).path).name for f in listing["files"])
    assert names == sorted(p.name for p in logs.glob("*.eval"))
    assert {f["task"] for f in listing["files"]} == {"framing-study"}
    framed = next(p for p in logs.glob("*.eval") if p.stem.endswith("framed"))
    log = _get(base + "/api/logs/" + urllib.parse.quote(str(framed)))
    assert isinstance(log, dict)
    assert log["eval"]["run_id"] == "2026-01-01T0000-framing-study-0001"
    assert log["eval"]["task_args"] == {"condition": "framed"}
    (sample,) = log["samples"]
    assert sample["output"]["choices"][0]["message"]["content"] == "Cruel."
    assert sample["scores"]["label_cruel_by_alice"]["value"] == 1
