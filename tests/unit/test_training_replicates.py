"""Replicated training runs on the real engine (torch + peft on the tiny GGUF).

Replicate k of a condition trains with seed `seed + k - 1` into `<condition>/replicate-<k>/`
on the same held-out split; the same replicate trained again gives the same adapter bytes;
a study cancelled during replicate 2 skips replicate 1 when run again and resumes replicate
2 from its checkpoint, to the bytes of an uninterrupted run. The pure parts (the folder
rule, the plan and its estimate) are checked without an engine.
"""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest

from persona_tui.errors import TrainingError
from persona_tui.scenario.parse import parse_scenario
from persona_tui.training.conditions import (
    replicate_folder,
    replicate_seed,
)
from persona_tui.training.estimate import (
    describe_plan,
    describe_rate_estimate,
    measured_seconds_per_token,
)
from persona_tui.training.params import (
    ConditionFinished,
    StepFinished,
    TrainingEvent,
    TrainingParams,
    TrainingPlan,
    TrainingPlanned,
    TrainingRun,
    TrainingStarted,
)
from tests.unit.test_training import study_text

PARAMS = TrainingParams(max_steps=2, lr=1e-2, batch_size=2, checkpoint_every=5, threads=1)


# --- the pure rules -----------------------------------------------------------------------------


def test_replicate_seeds_and_folders() -> None:
    assert [replicate_seed(1234, k) for k in (1, 2, 3)] == [1234, 1235, 1236]
    with pytest.raises(ValueError):
        replicate_seed(1234, 0)
    out = Path("/x/study")
    folder = replicate_folder(out, "learns", 2)
    assert folder == out / "learns" / "replicate-2"
    assert replicate_folder(out, "plays", 12) == out / "plays" / "replicate-12"
    with pytest.raises(ValueError):
        replicate_folder(out, "learns", 0)


def test_the_plan_says_the_work_and_its_estimate() -> None:
    runs = tuple(
        TrainingRun(c, k, 26, 10_000 + 200 * (c == "plays"), done=(c, k) == ("learns", 1))
        for c in ("learns", "plays")
        for k in (1, 2, 3)
    )
    unknown = TrainingPlan(runs, 3)
    assert unknown.tokens_left == 2 * 10_000 + 3 * 10_200
    assert describe_plan(unknown) == (
        "6 runs (2 conditions × 3 replicates), 26 steps and about 10,100 tokens per run, "
        "5 left (1 trained already); estimate after the first 5 steps"
    )
    assert describe_rate_estimate(unknown, 100.0) == (
        "estimated 8:26 of training for 5 runs (100 tok/s over the first steps)"
    )
    known = TrainingPlan(runs, 3, seconds_per_token=0.002, measured_runs=2)
    assert known.estimate_seconds == pytest.approx(50_600 * 0.002)
    assert describe_plan(known).endswith(
        "; estimated 1:41 of training (2.00 ms per token, from 2 earlier runs on this model)"
    )
    done = TrainingPlan(tuple(TrainingRun("learns", 1, 26, 10, done=True) for _ in (1,)), 1)
    assert describe_plan(done).endswith(" per run; all trained already")


def test_seconds_per_token_come_from_the_same_model_and_precision(tmp_path: Path) -> None:
    def record(folder: Path, sha: str, precision: str | None, seconds: float, tokens: int) -> None:
        folder.mkdir(parents=True)
        hyper = f'[hyperparameters]\nprecision = "{precision}"\n' if precision else ""
        (folder / "training.toml").write_text(
            f'[base_model]\nsha256 = "{sha}"\n{hyper}'
            f"[result]\nseconds = {seconds}\ntrained_tokens = {tokens}\n",
            encoding="utf-8",
        )

    record(replicate_folder(tmp_path, "learns", 1), "aa", "fp32", 10.0, 1000)
    record(replicate_folder(tmp_path, "learns", 2), "aa", "fp32", 30.0, 1000)
    record(replicate_folder(tmp_path, "plays", 1), "aa", "bf16", 1.0, 1000)  # other precision
    record(replicate_folder(tmp_path, "plays", 2), "bb", "fp32", 1.0, 1000)  # other model
    record(tmp_path / "old", "aa", "fp32", 50.0, 1000)  # a condition folder of before replicates
    assert measured_seconds_per_token(tmp_path, "aa", "fp32") == (pytest.approx(0.03), 3)
    assert measured_seconds_per_token(tmp_path, "cc", "fp32") == (None, 0)
    record(tmp_path / "mlx" / "replicate-1", "cc", None, 4.0, 1000)
    assert measured_seconds_per_token(tmp_path, "cc", "auto") == (pytest.approx(0.004), 1)


# --- real training ------------------------------------------------------------------------------

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")

from persona_tui.training.study import train_study  # noqa: E402
from tests.tiny_gguf import write_tiny_gguf  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replicates-home")


@pytest.fixture
def home(shared_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PERSONA_TUI_HOME", str(shared_home))
    return shared_home


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("replicates-model") / "tiny.gguf", seed=3)


def _toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_zero_replicates_are_refused(model: Path, tmp_path: Path) -> None:
    scenario = parse_scenario(study_text(), "s.toml")
    with pytest.raises(TrainingError, match="replicates must be at least 1, got 0"):
        train_study(scenario, model, tmp_path / "out", PARAMS, replicates=0)


@pytest.mark.slow
def test_replicates_differ_in_their_seed_and_resume_mid_replicate(
    model: Path, tmp_path: Path, home: Path
) -> None:
    # The scenario says one run per condition; replicates=2 overrides it.
    scenario = parse_scenario(study_text(), "s.toml")
    params = TrainingParams(max_steps=3, lr=1e-2, batch_size=2, checkpoint_every=5, threads=1)
    straight_events: list[TrainingEvent] = []
    straight = train_study(
        scenario,
        model,
        tmp_path / "straight",
        params,
        straight_events.append,
        conditions=["plays"],
        replicates=2,
    )
    assert [(r.condition, r.replicate, r.replicates, r.status) for r in straight.results] == [
        ("plays", 1, 2, "complete"),
        ("plays", 2, 2, "complete"),
    ]
    plan = next(e.plan for e in straight_events if isinstance(e, TrainingPlanned))
    assert [(r.condition, r.replicate, r.steps, r.done) for r in plan.runs] == [
        ("plays", 1, 3, False),
        ("plays", 2, 3, False),
    ]
    assert plan.seconds_per_token is None  # no earlier run in this folder
    steps = [(e.replicate, e.step) for e in straight_events if isinstance(e, StepFinished)]
    assert steps == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    one, two = (r.adapter for r in straight.results)
    assert one == tmp_path / "straight" / "plays" / "replicate-1" / "adapter.gguf"
    assert two == tmp_path / "straight" / "plays" / "replicate-2" / "adapter.gguf"
    assert one is not None and two is not None
    assert one.read_bytes() != two.read_bytes()  # another seed, another adapter
    first, second = (_toml(r.folder / "training.toml") for r in straight.results)
    assert first["replicate"] == {"index": 1, "of": 2, "seed": 5}
    assert second["replicate"] == {"index": 2, "of": 2, "seed": 6}
    assert [r["hyperparameters"]["seed"] for r in (first, second)] == [5, 6]
    # The same examples and held-out split (the study's seed), another fingerprint.
    assert first["data"]["sha256"] == second["data"]["sha256"]
    assert first["data"]["fingerprint"] != second["data"]["fingerprint"]
    assert first["result"]["trained_tokens"] > 0
    study = _toml(tmp_path / "straight" / "study.toml")
    assert study["replicates"] == 2
    assert [(a["replicate"], a["folder"], a["adapter"]) for a in study["adapters"]] == [
        (1, "plays/replicate-1", "plays/replicate-1/adapter.gguf"),
        (2, "plays/replicate-2", "plays/replicate-2/adapter.gguf"),
    ]

    # Cancelled during replicate 2: replicate 1 is finished, replicate 2 keeps a checkpoint.
    cancel = threading.Event()

    def cancel_in_replicate_2(event: TrainingEvent) -> None:
        if isinstance(event, StepFinished) and (event.replicate, event.step) == (2, 1):
            cancel.set()

    out = tmp_path / "stopped"
    stopped = train_study(
        scenario,
        model,
        out,
        params,
        cancel_in_replicate_2,
        cancel,
        conditions=["plays"],
        replicates=2,
    )
    assert [(r.replicate, r.status, r.steps) for r in stopped.results] == [
        (1, "complete", 3),
        (2, "interrupted", 1),
    ]
    assert (out / "plays" / "replicate-2" / "checkpoint").is_dir()
    # Run again: replicate 1 is skipped, replicate 2 resumes at step 1; the estimate now
    # comes from replicate 1's record (same model, same precision).
    events: list[TrainingEvent] = []
    resumed = train_study(
        scenario, model, out, params, events.append, conditions=["plays"], replicates=2
    )
    plan = next(e.plan for e in events if isinstance(e, TrainingPlanned))
    assert [r.done for r in plan.runs] == [True, False]
    assert plan.seconds_per_token is not None and plan.measured_runs == 1
    finished = [e.result for e in events if isinstance(e, ConditionFinished)]
    assert [(r.replicate, r.status) for r in finished] == [(1, "already-trained"), (2, "complete")]
    started = [e for e in events if isinstance(e, TrainingStarted)]
    assert [(e.replicate, e.done_steps) for e in started] == [(2, 1)]
    assert [e.step for e in events if isinstance(e, StepFinished)] == [2, 3]
    assert not (out / "plays" / "replicate-2" / "checkpoint").exists()
    # The same replicate gives the same bytes, an interrupted one too.
    for again, first_run in zip(resumed.results, straight.results, strict=True):
        assert again.adapter is not None and first_run.adapter is not None
        assert again.adapter.read_bytes() == first_run.adapter.read_bytes()


@pytest.mark.slow
def test_train_command_replicates_option(
    model: Path, tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from persona_tui.cli.main import main

    scenario_file = tmp_path / "tiny-finetune.toml"
    scenario_file.write_text(study_text().replace("seed = 5", "seed = 5\nreplicates = 3"), "utf-8")
    out = tmp_path / "adapters"
    argv = ["train", str(scenario_file), "--model", str(model), "-o", str(out)]
    argv += ["--max-steps", "1", "--batch-size", "2", "--threads", "1", "--conditions", "plays"]
    assert main([*argv, "--replicates", "0"]) == 2
    assert "--replicates must be at least 1, got 0" in capsys.readouterr().err
    assert main([*argv, "--replicates", "2"]) == 0  # overrides the scenario's 3
    err = capsys.readouterr().err
    assert (
        "to train: 2 runs (1 condition × 2 replicates), 1 step and about" in err
        and "; estimate after the first 5 steps" in err
    )
    assert "(" in err.split("estimated ", 1)[1] and "tok/s over the first steps)" in err
    assert "plays r1/2 step 1/1: loss" in err and "plays r2/2 step 1/1: loss" in err
    assert "plays r2/2: complete (1/1 steps" in err
    assert f"training runs in {out}" in err  # the table of every run
    assert "plays/replicate-1" in err and "plays/replicate-2" in err
    assert sorted(p.name for p in (out / "plays").iterdir()) == ["replicate-1", "replicate-2"]
    assert main([*argv, "--replicates", "2"]) == 0
    err = capsys.readouterr().err
    assert "2 replicates), 1 step and about" in err and "; all trained already" in err
    assert "plays r1/2: already-trained" in err


def test_study_takes_replicates_and_its_resume_command_keeps_them() -> None:
    import argparse

    from persona_tui.cli.study import add_study_command
    from persona_tui.cli.train import resume_command

    parser = argparse.ArgumentParser()
    add_study_command(parser.add_subparsers())
    args = parser.parse_args(["study", "bully-finetune", "--model", "demo", "--replicates", "5"])
    assert args.replicates == 5
    assert "--replicates 5" in resume_command(args, Path("/o"), "study")
