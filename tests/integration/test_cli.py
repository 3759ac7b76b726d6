"""The headless CLI as a user runs it: real processes, the real engine, the tiny GGUF."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from persona_tui.cli import main
from persona_tui.session.store import load_session
from tests.scenario_text import SMALL_SCENARIO, write_small_scenario


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PERSONA_TUI_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def cli(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PERSONA_TUI_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "persona_tui", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_small_scenario(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL_SCENARIO.replace('label = "Framed"', 'lable = "Framed"'))
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(good), str(bad)]) == 2
    out = capsys.readouterr().out
    assert f"{bad}:" in out and "did you mean 'label'" in out


def test_run_prints_session_path_last(tmp_path: Path, home: Path, tiny_gguf: Path) -> None:
    scenario = write_small_scenario(tmp_path)
    result = cli(
        "run",
        str(scenario),
        "--model",
        str(tiny_gguf),
        "--samples",
        "1",
        "--probes",
        "wish",
        home=home,
    )
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.parent == home / "data" / "sessions"
    session = load_session(path)
    assert session.header.status == "complete"
    assert {(t.condition, t.probe) for t in session.trials} == {
        ("baseline", "wish"),
        ("framed", "wish"),
    }
    assert path.stat().st_mode & 0o777 == 0o600
    listed = cli("sessions", home=home)
    assert session.header.id in listed.stdout


@pytest.mark.parametrize(
    ("make_model", "message"),
    [
        (lambda d: d / "missing.gguf", "no such file"),
        (lambda d: (d / "text.gguf").write_text("hello") and d / "text.gguf", "GGUF"),
    ],
)
def test_bad_model_is_one_clear_error(tmp_path: Path, home: Path, make_model, message: str) -> None:
    scenario = write_small_scenario(tmp_path)
    result = cli("run", str(scenario), "--model", str(make_model(tmp_path)), home=home)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr


def test_user_errors_exit_2_without_traceback(tmp_path: Path, home: Path, tiny_gguf: Path) -> None:
    result = cli("run", "no-such-scenario", "--model", str(tiny_gguf), home=home)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "bully-school-play" in result.stderr  # lists what exists
    result = cli(
        "run",
        str(write_small_scenario(tmp_path)),
        "--model",
        str(tiny_gguf),
        "--conditions",
        "nope",
        home=home,
    )
    assert result.returncode == 2 and "this scenario has: baseline, framed" in result.stderr


def start_run_until_saved(
    scenario: Path,
    model: Path,
    out: Path,
    home: Path,
    trials: int,
    inside_groups_of: int | None = None,
) -> subprocess.Popen[str]:
    """Start `persona-tui run` in a subprocess and return once `trials` trials are saved.

    With `inside_groups_of`, return the run stopped (SIGSTOP) at a moment when the saved
    trials end inside a group of that many trials: the run goes on between two looks at
    its session, so where a signal lands is chosen here, not raced (on a loaded machine
    the first look can come after whole groups were saved).
    """
    env = {**os.environ, "PERSONA_TUI_HOME": str(home)}
    command = [sys.executable, "-m", "persona_tui", "run", str(scenario)]
    process = subprocess.Popen(
        [*command, "--model", str(model), "--out", str(out), "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120  # an upper bound for a hung run, not a pace
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if out.exists():  # saves are atomic: the file always parses
                if inside_groups_of is None:
                    if len(load_session(out).trials) >= trials:
                        return process
                else:
                    process.send_signal(signal.SIGSTOP)  # its session stays as read now
                    saved = len(load_session(out).trials)
                    if saved >= trials and saved % inside_groups_of:
                        return process
                    process.send_signal(signal.SIGCONT)
            time.sleep(0.005)
    except BaseException:
        process.kill()
        process.wait()
        raise
    process.kill()
    process.wait()
    raise AssertionError(f"the run did not save {trials} trials within 120 s (or it ended)")


def test_sigkill_mid_run_then_resume_matches_uninterrupted(
    tmp_path: Path, home: Path, tiny_gguf: Path
) -> None:
    scenario = write_small_scenario(
        tmp_path,
        SMALL_SCENARIO.replace("max_tokens = 12", "max_tokens = 48").replace(
            "samples = 2", "samples = 8"
        ),
    )
    reference = tmp_path / "reference.toml"
    done = cli("run", str(scenario), "--model", str(tiny_gguf), "--out", str(reference), home=home)
    assert done.returncode == 0, done.stderr

    victim = tmp_path / "victim.toml"
    process = start_run_until_saved(scenario, tiny_gguf, victim, home, 3, inside_groups_of=24)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = load_session(victim)  # parses: every save was atomic
    assert 3 <= len(killed.trials) < 48, "kill the run in the middle"
    assert killed.header.status == "running"
    # 8 sequences at once, through groups of a condition's 3 cells (24 trials): the kill
    # came inside a group (the resume decodes that group whole again, with its sequences
    # refilled at the same steps, and saves only its missing trials).
    assert (killed.header.plan.batch, killed.header.plan.batch_cells) == (8, 3)
    assert len(killed.trials) < 24 or len(killed.trials) % 24
    ref = {t.key: t for t in load_session(reference).trials}
    for trial in killed.trials:
        assert trial.response == ref[trial.key].response

    resumed = cli("run", "--resume", str(victim), home=home)
    assert resumed.returncode == 0, resumed.stderr
    final = load_session(victim)
    assert final.header.status == "complete"
    assert {t.key: t.response for t in final.trials} == {k: t.response for k, t in ref.items()}


def test_sigint_leaves_session_interrupted_and_resumable(
    tmp_path: Path, home: Path, tiny_gguf: Path
) -> None:
    scenario = write_small_scenario(
        tmp_path,
        SMALL_SCENARIO.replace("max_tokens = 12", "max_tokens = 200").replace(
            "samples = 2", "samples = 40"
        ),
    )
    out = tmp_path / "s.toml"
    process = start_run_until_saved(scenario, tiny_gguf, out, home, trials=1)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stdout.strip().splitlines()[-1] == str(out)
    assert "resume with: persona-tui run --resume" in stderr
    session = load_session(out)
    assert session.header.status == "interrupted"
    assert 1 <= len(session.trials) < 240


def test_run_scores_options_after_sampling_and_resume_completes_them(
    tmp_path: Path, home: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.scenario_text import OPTIONS_SCENARIO

    scenario = write_small_scenario(tmp_path, OPTIONS_SCENARIO)
    both = tmp_path / "both.toml"
    args = ("--model", str(tiny_gguf), "--threads", "1", "--samples", "1")
    result = cli("run", str(scenario), *args, "--out", str(both), home=home)
    assert result.returncode == 0, result.stderr
    assert "options complete: 4/4 cells" in result.stderr
    session = load_session(both)
    assert session.header.status == "complete" and len(session.trials) == 6
    assert sorted(len(c.options) for c in session.option_cells) == [2, 2, 3, 3]

    # The real file through the analysis commands: tidy rows and the report's sections.
    rows_file = tmp_path / "options.csv"
    result = cli(
        "export",
        str(both),
        "--table",
        "options",
        "--format",
        "csv",
        "-o",
        str(rows_file),
        home=home,
    )
    assert result.returncode == 0, result.stderr
    import csv

    rows = list(csv.DictReader(rows_file.open(encoding="utf-8")))
    assert len(rows) == 10
    stored = {
        (c.condition, c.probe, o.id): o.logprob for c in session.option_cells for o in c.options
    }
    assert {(r["condition"], r["probe"], r["option"]): float(r["logprob"]) for r in rows} == (
        pytest.approx(stored)
    )
    assert all(r["prompt"] for r in rows)
    result = cli("report", str(both), home=home)
    assert result.returncode == 0, result.stderr
    assert "Likelihood probes" in result.stdout and "too few" in result.stdout

    # Options only (recorded: a resume keeps it), then sampling on a resume told --sample;
    # the values equal those of the full run.
    only = tmp_path / "only.toml"
    result = cli("run", str(scenario), *args, "--no-sample", "--out", str(only), home=home)
    assert result.returncode == 0, result.stderr
    first = load_session(only)
    assert first.trials == [] and first.header.status == "complete"
    assert first.header.plan.sample is False
    expected = {(c.condition, c.probe): c.options for c in first.option_cells}
    assert {(c.condition, c.probe): c.options for c in session.option_cells} == expected
    result = cli("run", "--resume", str(only), "--sample", home=home)
    assert result.returncode == 0, result.stderr
    resumed = load_session(only)
    assert resumed.header.status == "complete" and len(resumed.trials) == 6
    assert resumed.header.plan.sample is True
    assert {t.key: t.response for t in resumed.trials} == {
        t.key: t.response for t in session.trials
    }

    skipped = tmp_path / "skipped.toml"
    result = cli("run", str(scenario), *args, "--no-score", "--out", str(skipped), home=home)
    assert result.returncode == 0, result.stderr
    assert load_session(skipped).option_cells == []
    assert main(["run", "--resume", str(skipped), "--no-sample"]) == 2  # nothing left to do
    assert "scores no options (--no-score), so --no-sample" in capsys.readouterr().err
    result = cli("run", "--resume", str(skipped), home=home)  # keeps --no-score
    assert result.returncode == 0, result.stderr
    assert "options" not in result.stderr and load_session(skipped).option_cells == []
    result = cli("run", "--resume", str(skipped), "--score", home=home)
    assert result.returncode == 0, result.stderr
    rescored = load_session(skipped)
    assert rescored.header.plan.score is True
    assert {(c.condition, c.probe): c.options for c in rescored.option_cells} == expected
