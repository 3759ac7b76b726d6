"""Persona vectors from the command line as a user runs them (issue 23): real processes,
the real engine, the tiny GGUF, a temporary PERSONA_TUI_HOME.

`persona-tui vectors` writes a trait's control vector, record and answers; `run` of a
scenario that declares a trait extracts it first and records projections (resumable);
a steered condition needs its vectors, records them, and a sweep's scales share seeds.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from persona_tui.session.store import load_session
from tests.scenario_text import OPTIONS_SCENARIO, TRAIT_SCENARIO


def cli(*args: str, home: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PERSONA_TUI_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "persona_tui", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# The options scenario with its "framed" condition swept along malice (not declared here).
STEER_SCENARIO = OPTIONS_SCENARIO.replace('id = "small-options"', 'id = "small-steer"').replace(
    'label = "Framed"\n', 'label = "Framed"\nsteer = { trait = "malice", scale = [-2, 0, 2] }\n'
)


def test_vectors_writes_the_files_the_table_and_is_seeded(tmp_path: Path, tiny_gguf: Path) -> None:
    home = tmp_path / "home"
    scenario = write(tmp_path, "traits.toml", TRAIT_SCENARIO)
    first = ok(
        cli(
            "vectors",
            str(scenario),
            "--model",
            str(tiny_gguf),
            "-o",
            str(tmp_path / "a"),
            home=home,
        )
    )
    out = tmp_path / "a"
    for suffix in (".gguf", ".toml", ".responses.jsonl"):
        assert (out / f"malice{suffix}").stat().st_mode & 0o777 == 0o644, suffix
    # The per-layer table (the tiny model's one steerable layer, recommended) and the path.
    assert "trait malice: held-out separation per layer" in first.stdout
    assert "<- recommended" in first.stdout
    assert first.stdout.strip().splitlines()[-1] == str(out / "malice.gguf")
    record = tomllib.loads((out / "malice.toml").read_text(encoding="utf-8"))
    assert record["model"]["sha256"] == sha256(tiny_gguf)
    assert record["gguf_sha256"] == sha256(out / "malice.gguf")
    assert record["layers"] == [1] and record["recommended_layer"] == 1
    lines = (out / "malice.responses.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 * 4 * 2  # sides × questions × samples
    # Nothing went to the data folder: -o names the folder.
    assert not (home / "data" / "vectors").exists()

    ok(
        cli(
            "vectors",
            str(scenario),
            "--model",
            str(tiny_gguf),
            "-o",
            str(tmp_path / "b"),
            home=home,
        )
    )
    assert (out / "malice.gguf").read_bytes() == (tmp_path / "b" / "malice.gguf").read_bytes()
    assert (out / "malice.responses.jsonl").read_bytes() == (
        tmp_path / "b" / "malice.responses.jsonl"
    ).read_bytes()


def run_args(scenario: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run",
        str(scenario),
        "--model",
        str(model),
        "--out",
        str(out),
        "--threads",
        "1",
        *extra,
    ]


def test_run_extracts_a_declared_trait_then_records_every_projection(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    home = tmp_path / "home"
    scenario = write(tmp_path, "traits.toml", TRAIT_SCENARIO)
    out = tmp_path / "s.toml"
    result = ok(cli(*run_args(scenario, tiny_gguf, out), home=home))
    # vectors/store.default_folder under the child's PERSONA_TUI_HOME.
    folder = home / "data" / "vectors" / sha256(tiny_gguf)[:16] / "small-traits"
    assert (folder / "malice.gguf").is_file() and (folder / "malice.toml").is_file()
    assert "malice: layer 1" in result.stderr

    session = load_session(out)
    assert session.header.status == "complete"
    record = session.header.traits["malice"]
    assert (Path(record.vectors), record.layer) == (folder / "malice.gguf", 1)
    assert record.sha256 == sha256(folder / "malice.gguf")
    assert "[traits.malice]" in out.read_text(encoding="utf-8")
    assert session.trials and all(set(t.projections) == {"malice"} for t in session.trials)
    assert len(session.option_cells) == 4  # 2 conditions × 2 probes with options
    assert all(set(c.projections) == {"malice"} for c in session.option_cells)

    exported = ok(cli("export", str(out), "--table", "projections", "--format", "csv", home=home))
    rows = exported.stdout.strip().splitlines()
    header = rows[0].split(",")
    for column in ("condition", "probe", "sample", "trait", "layer", "projection"):
        assert column in header
    assert len(rows) - 1 == len(session.trials) + len(session.option_cells)

    # --no-projections: nothing measured, nothing extracted (a fresh data folder).
    bare_home = tmp_path / "bare"
    bare = tmp_path / "bare.toml"
    ok(cli(*run_args(scenario, tiny_gguf, bare, "--no-projections"), home=bare_home))
    plain = load_session(bare)
    assert plain.header.status == "complete" and not plain.header.traits
    assert not any(t.projections for t in plain.trials)
    assert not any(c.projections for c in plain.option_cells)
    assert not (bare_home / "data" / "vectors").exists()
    assert "[traits." not in bare.read_text(encoding="utf-8")


# A child process that runs a scenario (argv: scenario, model, session, the pass to die in,
# vector folders...) and SIGKILLs itself once that pass has saved its first result: a kill
# at a chosen point, not a race.
KILL_DURING = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from persona_tui.run.events import ProjectionsProgress, TrialFinished
    from persona_tui.run.finish import finish_run
    from persona_tui.run.lifecycle import RunRequest, open_run
    from persona_tui.scenario.parse import load_scenario

    kind = {"projections": ProjectionsProgress, "sampling": TrialFinished}[sys.argv[4]]

    def on_event(event):
        if isinstance(event, kind) and 0 < event.done < event.total:
            os.kill(os.getpid(), signal.SIGKILL)

    request = RunRequest(
        scenario=load_scenario(Path(sys.argv[1])), model=sys.argv[2], out=Path(sys.argv[3]),
        threads=1, vectors=tuple(Path(v) for v in sys.argv[5:]),
    )
    with open_run(request, on_event) as run:
        finish_run(run, on_event)
    """
)


def run_and_kill(
    scenario: Path, model: Path, out: Path, during: str, home: Path, *vectors: Path
) -> None:
    env = {**os.environ, "PERSONA_TUI_HOME": str(home)}
    args = [str(scenario), str(model), str(out), during, *map(str, vectors)]
    killed = subprocess.run(
        [sys.executable, "-c", KILL_DURING, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr


def test_a_run_killed_in_the_projection_pass_resumes_to_the_same_values(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    home = tmp_path / "home"
    scenario = write(tmp_path, "traits.toml", TRAIT_SCENARIO)
    reference = tmp_path / "reference.toml"
    ok(cli(*run_args(scenario, tiny_gguf, reference), home=home))

    victim = tmp_path / "victim.toml"
    run_and_kill(scenario, tiny_gguf, victim, "projections", home)
    partial = load_session(victim)
    assert partial.header.status == "running"
    measured = [t for t in partial.trials if t.projections]
    assert measured and len(measured) < len(partial.trials), "killed inside the pass"

    resumed = ok(cli("run", "--resume", str(victim), home=home))
    assert "projections" in resumed.stderr
    final = load_session(victim)
    ref = load_session(reference)
    assert final.header.status == "complete"
    assert {t.key: t.projections for t in final.trials} == {
        t.key: t.projections for t in ref.trials
    }
    assert {c.key: c.projections for c in final.option_cells} == {
        c.key: c.projections for c in ref.option_cells
    }


def test_a_steered_trait_without_vectors_stops_before_the_run(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    home = tmp_path / "home"
    scenario = write(tmp_path, "steer.toml", STEER_SCENARIO)
    out = tmp_path / "s.toml"
    result = cli(*run_args(scenario, tiny_gguf, out), home=home)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "persona-tui vectors" in result.stderr and "malice" in result.stderr
    assert "--vectors" in result.stderr
    assert not out.exists(), "nothing ran"


def test_steering_records_its_vectors_shares_seeds_and_reproduces(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    home = tmp_path / "home"
    vectors = tmp_path / "vectors"
    traits = write(tmp_path, "traits.toml", TRAIT_SCENARIO)
    ok(cli("vectors", str(traits), "--model", str(tiny_gguf), "-o", str(vectors), home=home))
    steer = write(tmp_path, "steer.toml", STEER_SCENARIO)
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    for out in (first, second):
        ok(cli(*run_args(steer, tiny_gguf, out, "--vectors", str(vectors)), home=home))

    session = load_session(first)
    assert session.header.status == "complete"
    swept = ("framed--s-2", "framed--s0", "framed--s2")
    assert set(session.header.steering) == set(swept)
    for condition, scale in zip(swept, (-2.0, 0.0, 2.0), strict=True):
        record = session.header.steering[condition]
        assert (record.trait, record.layer, record.scale) == ("malice", 1, scale)
        assert record.sha256 == sha256(vectors / "malice.gguf")
    assert "[steering.framed--s2]" in first.read_text(encoding="utf-8")

    # Sample k of probe p has one seed at every scale; the scales differ by steering.
    seeds: dict[tuple[str, int], set[int]] = {}
    responses: dict[tuple[str, int], set[str]] = {}
    for trial in session.trials:
        if trial.condition in swept:
            seeds.setdefault((trial.probe, trial.sample), set()).add(trial.seed)
            responses.setdefault((trial.probe, trial.sample), set()).add(trial.response)
    assert seeds and all(len(s) == 1 for s in seeds.values())
    assert any(len(r) > 1 for r in responses.values()), "steering changed some answer"

    # Scale 0 is the unsteered framing exactly (same seeds: they derive from "framed").
    plain_out = tmp_path / "plain-session.toml"
    plain_scenario = write(tmp_path, "plain.toml", OPTIONS_SCENARIO)
    ok(cli(*run_args(plain_scenario, tiny_gguf, plain_out), home=home))
    plain = load_session(plain_out)

    def options(s: object, condition: str) -> dict[str, list[float]]:
        return {
            c.probe: [o.logprob for o in c.options]
            for c in s.option_cells  # type: ignore[attr-defined]
            if c.condition == condition
        }

    def answers(s: object, condition: str) -> dict[tuple[str, int], str]:
        return {
            (t.probe, t.sample): t.response
            for t in s.trials  # type: ignore[attr-defined]
            if t.condition == condition
        }

    assert options(session, "framed--s0") == options(plain, "framed")
    assert options(session, "framed--s2") != options(plain, "framed")
    assert answers(session, "framed--s0") == answers(plain, "framed")

    again = load_session(second)
    assert [(t.key, t.response) for t in again.trials] == [
        (t.key, t.response) for t in session.trials
    ]


def test_a_changed_control_vector_is_refused_on_resume(tmp_path: Path, tiny_gguf: Path) -> None:
    home = tmp_path / "home"
    vectors = tmp_path / "vectors"
    traits = write(tmp_path, "traits.toml", TRAIT_SCENARIO)
    ok(cli("vectors", str(traits), "--model", str(tiny_gguf), "-o", str(vectors), home=home))
    steer = write(tmp_path, "steer.toml", STEER_SCENARIO)
    out = tmp_path / "s.toml"
    run_and_kill(steer, tiny_gguf, out, "sampling", home, vectors)
    assert 0 < len(load_session(out).trials) < load_session(out).header.plan.total
    # A killed session whose steering file has changed since it started.
    gguf = vectors / "malice.gguf"
    data = bytearray(gguf.read_bytes())
    data[-1] ^= 0x01
    gguf.write_bytes(bytes(data))
    before = out.read_bytes()
    result = cli("run", "--resume", str(out), home=home)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(gguf) in result.stderr and "changed" in result.stderr
    assert out.read_bytes() == before
    gguf.unlink()  # gone: refused too, naming it
    result = cli("run", "--resume", str(out), home=home)
    assert result.returncode == 2 and str(gguf) in result.stderr and "gone" in result.stderr
    assert out.read_bytes() == before


@pytest.mark.skipif(
    not __import__("tests.server_fixture", fromlist=["x"]).server_available(),
    reason="llama-cpp-python's server extra is not installed",
)
def test_an_engine_without_activations_skips_projections_and_refuses_steering(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    from tests.server_fixture import llama_cpp_server

    home = tmp_path / "home"
    traits = write(tmp_path, "traits.toml", TRAIT_SCENARIO)
    steer = write(tmp_path, "steer.toml", STEER_SCENARIO)
    with llama_cpp_server(tiny_gguf, tmp_path) as server:
        out = tmp_path / "s.toml"
        result = ok(
            cli(
                "run",
                str(traits),
                "--model",
                server.ref,
                "--out",
                str(out),
                "--samples",
                "1",
                home=home,
            )
        )
        notes = [line for line in result.stderr.splitlines() if "projections" in line]
        assert len(notes) == 1 and "not recorded" in notes[0], result.stderr
        session = load_session(out)
        assert session.header.status == "complete" and not session.header.traits
        assert not (home / "data" / "vectors").exists()

        refused = tmp_path / "refused.toml"
        result = cli("run", str(steer), "--model", server.ref, "--out", str(refused), home=home)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "steer" in result.stderr
        assert not refused.exists()
