"""The session index (listing, the reproducibility record, deleting), the scenario listing
and the scenario as run: the core behind `persona-tui sessions` / `scenarios` and the app."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from filelock import FileLock

from persona_tui import paths
from persona_tui.cli.main import main
from persona_tui.errors import ScenarioError, SessionLockedError
from persona_tui.scenario.catalog import builtin_scenarios, list_scenarios
from persona_tui.scenario.parse import parse_scenario
from persona_tui.session.as_run import scenario_as_run
from persona_tui.session.index import (
    delete_session,
    is_sidecar,
    list_sessions,
    reproducibility_data,
    reproducibility_record,
    sidecar_lock_path,
    sidecar_path,
)
from persona_tui.session.store import SessionStore, load_session, lock_path_for
from tests.analysis_sessions import STUDY_SCENARIO, SessionSpec, TrialSpec, write_session
from tests.scenario_text import SMALL_SCENARIO


def _two_sessions() -> tuple[Path, Path]:
    folder = paths.sessions_dir()
    folder.mkdir(parents=True)
    trials = [TrialSpec("baseline", "p1", 0), TrialSpec("framed", "p2", 1)]
    first = write_session(
        folder / "b-first.toml",
        SessionSpec(session_id="2026-01-01T0000-framing-study-0001", trials=trials),
    )
    second = write_session(
        folder / "a-second.toml",
        SessionSpec(session_id="2026-01-02T0000-framing-study-0002", trials=trials[:1]),
    )
    os.utime(first, (1_000, 1_000))  # the older file
    sidecar_path(first).write_text("format_version = 1\n")
    return first, second


def test_sessions_are_listed_without_sidecars_by_name_or_newest_first() -> None:
    _two_sessions()
    (paths.sessions_dir() / "broken.toml").write_text("not toml [")
    newest = list_sessions()
    assert [s.path.name for s in newest] == ["broken.toml", "a-second.toml", "b-first.toml"]
    by_name = list_sessions(newest_first=False)
    assert [s.path.name for s in by_name] == ["a-second.toml", "b-first.toml", "broken.toml"]
    assert all(not is_sidecar(s.path) for s in by_name)
    summary = by_name[1]
    assert (summary.id, summary.scenario, summary.status, summary.model) == (
        "2026-01-01T0000-framing-study-0001",
        "framing-study",
        "complete",
        "test-model",
    )
    assert (summary.progress, summary.annotated) == ("2/40", 0)
    assert by_name[2].error and by_name[2].status == "unreadable"
    assert by_name[2].as_dict() == {"path": str(by_name[2].path), "error": by_name[2].error}


def test_cli_sessions_lists_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    first, second = _two_sessions()
    assert main(["sessions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{'2026-01-02T0000-framing-study-0002':44} complete       1/40   annotated    0  "
        f"test-model  {second}",
        f"{'2026-01-01T0000-framing-study-0001':44} complete       2/40   annotated    0  "
        f"test-model  {first}",
    ]
    assert main(["sessions", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[1] == {
        "path": str(first),
        "id": "2026-01-01T0000-framing-study-0001",
        "scenario": "framing-study",
        "status": "complete",
        "created": "2026-01-01T00:00:00+00:00",
        "trials": 2,
        "planned": 40,
        "annotated": 0,
        "model": "test-model",
    }


def test_cli_sessions_record_prints_the_apps_record(capsys: pytest.CaptureFixture[str]) -> None:
    first, _ = _two_sessions()
    session = load_session(first)
    assert main(["sessions", "--record", str(first)]) == 0
    out = capsys.readouterr().out
    assert out == reproducibility_record(session) + "\n"
    assert "trial seeds\n  baseline · p1 #0: 1000\n  framed · p2 #1: 1001" in out
    assert "model          test-model\npath           /models/test.gguf" in out
    # A session id (the file's name in the sessions folder) works too.
    assert main(["sessions", "--record", "b-first"]) == 0
    assert capsys.readouterr().out == out

    assert main(["sessions", "--record", str(first), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(json.dumps(reproducibility_data(session)))
    assert data["session"] == "2026-01-01T0000-framing-study-0001"
    assert data["model"]["sha256"] == "ab" * 32
    assert data["sampling"]["temperature"] == 0.7
    assert data["plan"]["conditions"] == ["baseline", "framed"]
    assert data["trial_seeds"] == [
        {"condition": "baseline", "probe": "p1", "sample": 0, "seed": 1000},
        {"condition": "framed", "probe": "p2", "sample": 1, "seed": 1001},
    ]


def test_the_record_says_which_passes_the_run_chose() -> None:
    """A pass the session chose not to run (`--no-score`) is said so, not left missing."""
    first, _ = _two_sessions()
    session = load_session(first)
    assert "\npasses         sampling · answer option scoring\n" in reproducibility_record(session)
    plan = replace(session.header.plan, score=False)
    no_score = replace(session, header=replace(session.header, plan=plan))
    record = reproducibility_record(no_score)
    assert "\npasses         sampling (answer options not scored: --no-score)\n" in record
    assert reproducibility_data(no_score)["plan"]["score"] is False
    plan = replace(session.header.plan, sample=False)
    no_sample = replace(session, header=replace(session.header, plan=plan))
    assert "(trials not sampled: --no-sample)" in reproducibility_record(no_sample)


def test_cli_sessions_record_of_a_missing_session(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sessions", "--record", "nope"]) == 2
    assert "nope: no such session file" in capsys.readouterr().err


def test_delete_removes_the_session_its_sidecar_and_locks() -> None:
    first, second = _two_sessions()
    finished_judge = FileLock(str(sidecar_lock_path(first)))
    finished_judge.acquire()
    finished_judge.release()  # the lock file stays behind, as after a judge run
    removed = delete_session(first)
    assert removed == [first, sidecar_path(first)]
    leftovers = [first, sidecar_path(first), sidecar_lock_path(first), lock_path_for(first)]
    assert not any(p.exists() for p in leftovers)
    assert second.exists()
    broken = paths.sessions_dir() / "broken.toml"
    broken.write_text("not toml [")
    assert delete_session(broken) == [broken]


def test_delete_is_refused_while_the_session_is_written_or_judged() -> None:
    first, _ = _two_sessions()
    with SessionStore.open(first), pytest.raises(SessionLockedError):
        delete_session(first)
    assert first.exists()
    judging = FileLock(str(sidecar_lock_path(first)), timeout=0)
    judging.acquire()
    try:
        with pytest.raises(SessionLockedError, match="judge"):
            delete_session(first)
    finally:
        judging.release()
    assert first.exists() and sidecar_path(first).exists()
    assert delete_session(first) == [first, sidecar_path(first)]


def test_scenarios_are_listed_built_in_then_user() -> None:
    folder = paths.user_scenarios_dir()
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text(SMALL_SCENARIO)
    (folder / "zz-broken.toml").write_text('id = "x"\n')
    entries = list_scenarios()
    assert [e.path for e in entries] == [
        *builtin_scenarios(),
        folder / "mine.toml",
        folder / "zz-broken.toml",
    ]
    assert {e.origin for e in entries[:-2]} == {"built-in"}
    mine, broken = entries[-2:]
    assert mine.origin == broken.origin == "user"
    assert not isinstance(mine.scenario, ScenarioError) and mine.scenario.id == "small"
    assert isinstance(broken.scenario, ScenarioError)


def test_the_scenario_as_run_is_the_copy_in_the_session() -> None:
    first, _ = _two_sessions()
    session = load_session(first)
    scenario = scenario_as_run(session)
    assert scenario == parse_scenario(STUDY_SCENARIO, "/scenarios/test.toml")
    assert scenario_as_run(session, as_copy=True).source_path == f"{first} (scenario copy)"
    session.header = replace(session.header, scenario_source='id = "x"\n')
    with pytest.raises(ScenarioError, match=r"scenario copy"):
        scenario_as_run(session, as_copy=True)
