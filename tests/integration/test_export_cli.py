"""`persona-tui export` and `import inspect` as a user runs them: real processes, real files."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from persona_tui.analysis import load_sessions
from tests.analysis_sessions import SessionSpec, TrialSpec, annotation, write_session

pd = pytest.importorskip("pandas")

AWKWARD = [
    'She said "hello", then left.',
    "line one\nline two\r\nline three",
    "commas, ; semicolons\ttabs",
    "Unicode: naïve café — 世界 🙂",
    "  leading spaces",
]


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PERSONA_TUI_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "persona_tui", *args], capture_output=True, env=env, timeout=120
    )


def _session(tmp_path: Path) -> Path:
    trials = [
        TrialSpec(
            "baseline" if i % 2 == 0 else "framed",
            f"p{i + 1}",
            0,
            response=text,
            annotations=(
                dataclasses.replace(
                    annotation("alice", "cruel" if i % 2 else "ok", harm=i), note=text
                ),
            ),
        )
        for i, text in enumerate(AWKWARD)
    ]
    return write_session(tmp_path / "s.toml", SessionSpec(trials=trials))


def test_csv_export_loads_with_pandas_read_csv_without_options(tmp_path: Path) -> None:
    path = _session(tmp_path)
    out = tmp_path / "rows.csv"
    result = cli("export", str(path), "--format", "csv", "-o", str(out), home=tmp_path / "home")
    assert result.returncode == 0, result.stderr.decode()
    frame = pd.read_csv(out)  # no options: RFC 4180, UTF-8 without BOM, header row
    records = load_sessions([path])
    assert frame["response"].tolist() == [r.response for r in records]
    assert frame["note"].tolist() == [r.note for r in records]
    assert frame["scale_harm"].tolist() == list(range(len(AWKWARD)))
    assert frame["blind"].tolist() == [False] * len(AWKWARD)  # `false` reads as a boolean
    assert frame["seed"].dtype.kind == "i" and frame["seconds"].dtype.kind == "f"
    stdout = cli("export", str(path), "--format", "csv", home=tmp_path / "home").stdout
    assert pd.read_csv(io.BytesIO(stdout))["response"].tolist() == frame["response"].tolist()


def test_inspect_export_and_import_on_the_command_line(tmp_path: Path) -> None:
    pytest.importorskip("inspect_ai.log")
    home = tmp_path / "home"
    path = _session(tmp_path)
    logs = tmp_path / "logs"
    result = cli("export", str(path), "--format", "inspect", "-o", str(logs), home=home)
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(p.name for p in logs.iterdir()) == [
        "2026-01-01T0000-framing-study-0001_baseline.eval",
        "2026-01-01T0000-framing-study-0001_framed.eval",
    ]
    assert b"inspect view --log-dir" in result.stderr
    no_dir = cli("export", str(path), "--format", "inspect", home=home)
    assert no_dir.returncode == 2 and b"-o DIR" in no_dir.stderr
    imported = cli("import", "inspect", *map(str, sorted(logs.iterdir())), home=home)
    assert imported.returncode == 0, imported.stderr.decode()
    session_path = Path(imported.stdout.decode().strip().splitlines()[-1])
    assert session_path.parent == home / "data" / "sessions"
    listed = cli("sessions", home=home)
    assert session_path.stem in listed.stdout.decode()


def test_import_inspect_keeps_an_existing_session_unless_forced(tmp_path: Path) -> None:
    pytest.importorskip("inspect_ai.log")
    from persona_tui.analysis.inspect_export import export_inspect

    logs = [e.path for e in export_inspect([_session(tmp_path)], tmp_path / "logs")]
    target = tmp_path / "imported.toml"
    target.write_text("not a session, but mine")
    refused = cli("import", "inspect", *map(str, logs), "-o", str(target), home=tmp_path)
    assert refused.returncode == 2 and b"--force" in refused.stderr
    assert target.read_text() == "not a session, but mine"
    forced = cli("import", "inspect", *map(str, logs), "-o", str(target), "--force", home=tmp_path)
    assert forced.returncode == 0, forced.stderr.decode()
    assert forced.stdout.decode().strip() == str(target)
    assert "[session]" in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _projection_session_file(tmp_path: Path) -> Path:
    """A session with trait projections, written as a run would (header, then each trial and
    option cell through the store)."""
    from tests.analysis_sessions import projection_session, write_with_trials

    trials = {
        (c, 0, p): [0.5 * i + (1.0 if c == "framed" else 0.0), 0.5 * i]
        for i, p in enumerate(("p1", "p2", "p3", "p4", "p5", "p6", "p7"))
        for c in ("baseline", "framed")
    }
    cells = {(c, 0, "p1"): (2.0 if c == "framed" else 0.5, 0.0) for c in ("baseline", "framed")}
    session = projection_session(trials, cells, steering={"framed": 4.0})
    return write_with_trials(tmp_path / "projections.toml", session)


def test_projections_export_and_report_on_the_command_line(tmp_path: Path) -> None:
    path = _projection_session_file(tmp_path)
    home = tmp_path / "home"
    out = tmp_path / "projections.csv"
    result = cli("export", str(path), "--table", "projections", "-o", str(out), home=home)
    assert result.returncode == 0, result.stderr.decode()
    frame = pd.read_csv(out)
    assert len(frame) == 7 * 2 * 2 + 2  # trials × trait, then cells × trait
    assert frame["kind"].tolist() == ["response"] * 28 + ["prompt"] * 2
    assert frame["sample"].isna().tolist() == [False] * 28 + [True] * 2
    framed = frame[frame["condition"] == "framed"]
    assert set(framed["steer_scale"]) == {4.0}
    assert frame[frame["condition"] == "baseline"]["steer_scale"].isna().all()
    jsonl = cli("export", str(path), "--table", "projections", "-f", "jsonl", home=home)
    assert jsonl.returncode == 0 and len(jsonl.stdout.splitlines()) == 30
    report = cli("report", str(path), "--source", "rules", home=home)
    text = report.stdout.decode()
    assert "Trait projections: malice at layer 3, responses (mean over tokens)" in text, (
        report.stderr.decode()
    )
    assert "Trait projections: malice at layer 3, prompts (last token)" in text


def test_projections_export_says_when_there_are_none(tmp_path: Path) -> None:
    result = cli("export", str(_session(tmp_path)), "--table", "projections", home=tmp_path)
    assert result.returncode != 0
    assert b"no trait projections" in result.stderr
