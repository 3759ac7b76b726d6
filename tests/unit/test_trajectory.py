"""A training study's trajectory on the real engines (torch + peft on the tiny GGUF, probed
with llama.cpp): every checkpoint of every run keeps its adapter when asked, the adapter of
step s is exactly that of a run stopped at step s, and `study --probe-checkpoints` scores
each step in a session of its own and prints the log-odds against the training step."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
gguf = pytest.importorskip("gguf")

from persona_tui.errors import TrainingError  # noqa: E402
from persona_tui.scenario.parse import parse_scenario  # noqa: E402
from persona_tui.session.read import read_session_file  # noqa: E402
from persona_tui.training.params import TrainingParams  # noqa: E402
from persona_tui.training.study import train_study  # noqa: E402
from tests.tiny_gguf import write_tiny_gguf  # noqa: E402
from tests.unit.test_adapters import options_study_text  # noqa: E402

PARAMS = TrainingParams(max_steps=3, lr=1e-2, batch_size=2, checkpoint_every=1, threads=1)


def tensors(path: Path) -> dict[str, bytes]:
    reader = gguf.GGUFReader(str(path))
    return {t.name: bytes(t.data.tobytes()) for t in reader.tensors}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PERSONA_TUI_HOME", str(tmp_path / "home"))
    return tmp_path


def test_each_checkpoint_keeps_the_adapter_a_shorter_run_would_end_with(home: Path) -> None:
    model = write_tiny_gguf(home / "tiny.gguf", seed=3)
    scenario = parse_scenario(options_study_text(), str(home / "tiny-finetune.toml"))
    out = home / "study"
    result = train_study(scenario, model, out, PARAMS, conditions=["learns"], keep_checkpoints=True)
    assert result.complete
    run = out / "learns" / "replicate-1"
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["step-1", "step-2"]  # the last step is the finished adapter itself
    record = tomllib.loads((run / "checkpoints" / "step-2" / "training.toml").read_text())
    assert record["result"]["steps"] == 2 and record["condition"]["id"] == "learns"
    # Training is deterministic: a run stopped at step 2 ends with the same weights.
    short = home / "short"
    two = TrainingParams(max_steps=2, lr=1e-2, batch_size=2, checkpoint_every=1, threads=1)
    assert train_study(scenario, model, short, two, conditions=["learns"]).complete
    assert tensors(run / "checkpoints" / "step-2" / "adapter.gguf") == tensors(
        short / "learns" / "replicate-1" / "adapter.gguf"
    )
    # A finished run without kept checkpoints cannot give its trajectory: said plainly.
    with pytest.raises(TrainingError, match="without keeping its checkpoints"):
        train_study(scenario, model, short, two, conditions=["learns"], keep_checkpoints=True)


def test_study_probes_every_checkpoint_and_prints_the_trajectory(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from persona_tui.cli.main import main

    model = write_tiny_gguf(home / "tiny.gguf", seed=3)
    scenario_file = home / "tiny-finetune.toml"
    scenario_file.write_text(options_study_text(), encoding="utf-8")
    out = home / "study"
    argv = ["study", str(scenario_file), "--model", str(model), "-o", str(out), "--no-sample"]
    argv += ["--max-steps", "3", "--batch-size", "2", "--threads", "1", "--lr", "0.01"]
    argv += ["--checkpoint-every", "1", "--replicates", "2", "--probe-checkpoints"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    for step in (1, 2):
        session = read_session_file(out / f"session-2-runs-step-{step}.toml")
        assert session.header.plan.conditions == ("learns", "plays")  # no base: unchanged
        assert {a.steps for a in session.header.adapters} == {step}
        assert {(c.condition, c.replicate) for c in session.option_cells} == {
            (c, k) for c in ("learns", "plays") for k in (1, 2)
        }
        paths = {a.path for a in session.header.adapters}
        assert all(f"checkpoints/step-{step}/adapter.gguf" in p for p in paths)
    assert "by training step" in captured.out
    table = captured.out[captured.out.index("by training step") :]
    assert "step 1" in table and "step 2" in table and "step 3" in table
    assert "(untouched model)" in table and (out / "trajectory.png").stat().st_size > 0
