"""The projection trajectory of a training study (analysis/projection_trajectory.py) on
synthetic sessions: checkpoint sessions (adapter conditions only, option cells' prompt
projections) beside the final session (the untouched model too, and trials' response
projections, which the trajectory leaves out). Hand-computed means and shifts, a drift
planted over the steps found, and the training runs resampled as a level."""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

import pytest

from persona_tui.analysis.projection_trajectory import (
    projection_trajectory,
    projection_trajectory_table,
)
from persona_tui.analysis.projections import analyze_projections
from persona_tui.analysis.records import dataset_of
from persona_tui.errors import PersonaError
from persona_tui.session.model import Session
from tests.analysis_sessions import options_session, projection_session

Cells = dict[tuple[str, int, str], float]  # (condition, replicate, probe) -> projection
RESAMPLES = 400


def study_session(
    cells: Cells, step: int, trials: Cells | None = None, name: str = "final"
) -> Session:
    """A study session whose adapters were trained `step` steps: option cells with
    `cells[...]` as their prompt projection (replicate 0: the untouched model), and
    trials with `trials[...]` as their response projection."""
    session = projection_session(
        {key: [value] for key, value in (trials or {}).items()},
        {key: (value, 0.0) for key, value in cells.items()},
        session_id=f"2026-01-01T0000-framing-study-{name}",
    )
    adapters = tuple(dataclasses.replace(a, steps=step) for a in session.header.adapters)
    return dataclasses.replace(
        session, header=dataclasses.replace(session.header, adapters=adapters)
    )


BASE: Cells = {("base", 0, "p1"): 1.0, ("base", 0, "p2"): 2.0}  # mean 1.5


def test_means_and_shifts_by_hand() -> None:
    # learns: step 1, run 1 mean 2.0 and run 2 mean 2.5; step 3 (final), runs 3.0 and 4.0.
    step1 = {
        ("learns", 1, "p1"): 1.5,
        ("learns", 1, "p2"): 2.5,
        ("learns", 2, "p1"): 2.0,
        ("learns", 2, "p2"): 3.0,
    }
    final = {
        **BASE,
        ("learns", 1, "p1"): 2.5,
        ("learns", 1, "p2"): 3.5,
        ("learns", 2, "p1"): 3.5,
        ("learns", 2, "p2"): 4.5,
    }
    # The final session's trials (response projections) are far off: not in the trajectory.
    trials = {key: 100.0 for key in final}
    sessions = [
        study_session(final, 3, trials),
        study_session(step1, 1, name="step-1"),
    ]
    trajectory = projection_trajectory(sessions, resamples=RESAMPLES)
    assert trajectory is not None
    assert trajectory.steps == (1, 3)
    assert trajectory.traits == ("malice",) and dict(trajectory.layers) == {"malice": 3}
    assert trajectory.reference == (("malice", "base", 1.5),)
    first, last = trajectory.of("malice", "learns")
    assert (first.step, first.reference, first.runs) == (1, "base", 2)
    assert first.mean == pytest.approx(2.25) and first.shift == pytest.approx(0.75)
    assert last.mean == pytest.approx(3.5) and last.shift == pytest.approx(2.0)
    # Between runs: the runs' shifts 0.5 and 1.0 (step 1), 1.5 and 2.5 (step 3).
    assert first.spread is not None and last.spread is not None
    assert (first.spread.low, first.spread.high) == pytest.approx((0.5, 1.0))
    assert first.spread.sd == pytest.approx(statistics.stdev([0.5, 1.0]))
    assert (last.spread.low, last.spread.high) == pytest.approx((1.5, 2.5))
    assert first.interval is not None and first.interval.low <= 0.75 <= first.interval.high

    table = projection_trajectory_table(trajectory)
    assert "malice at layer 3, prompts (last token) by training step" in table
    assert "step 1" in table and "step 3" in table
    row = next(line for line in table.splitlines() if line.startswith("learns"))
    assert "+0.75 [" in row and "±0.35" in row and "+2.00 [" in row and "±0.71" in row
    assert "+1.50  (untouched model)" in table


def test_the_interval_is_the_projection_contrast_of_analyze_projections() -> None:
    """The shift's interval and spread are analyze_projections' paired contrast (probes and
    runs resampled), whichever order the conditions come in."""
    cells: Cells = {}
    for i in range(6):
        probe = f"p{i + 1}"
        cells[("base", 0, probe)] = 0.1 * i
        for run in (1, 2, 3):
            cells[("learns", run, probe)] = 0.1 * i + 0.4 + 0.2 * (run - 2) + 0.05 * (i % 2)
    final = study_session(cells, 5)
    trajectory = projection_trajectory([final], resamples=RESAMPLES)
    assert trajectory is not None
    (point,) = trajectory.of("malice", "learns")
    prompt = analyze_projections(dataset_of([final]), resamples=RESAMPLES).of("malice", "prompt")
    assert prompt is not None
    (expected,) = [c for c in prompt.contrasts if {c.condition, c.reference} == {"learns", "base"}]
    sign = 1.0 if expected.condition == "learns" else -1.0
    assert expected.difference is not None and expected.interval is not None
    assert point.shift == pytest.approx(sign * expected.difference)
    assert point.interval is not None
    bounds = sorted(sign * x for x in (expected.interval.low, expected.interval.high))
    assert (point.interval.low, point.interval.high) == pytest.approx(tuple(bounds))


def drift_study(offsets: tuple[float, ...], slope: float) -> list[Session]:
    """8 probes; `learns` drifts by `slope` per step (steps 1..4, 4 the final session),
    `plays` stays on the base model; each run k of 3 is off by offsets[k - 1]."""
    sessions = []
    for step in (1, 2, 3, 4):
        cells: Cells = {}
        for i in range(8):
            probe = f"p{i + 1}"
            level = 0.3 * (i % 4) - 0.4
            wobble = 0.15 * ((i * 5) % 3 - 1)
            if step == 4:
                cells[("base", 0, probe)] = level
            for run, offset in enumerate(offsets, 1):
                cells[("learns", run, probe)] = level + slope * step + offset + wobble
                cells[("plays", run, probe)] = level + offset + wobble * (-1) ** i
        sessions.append(study_session(cells, step, name=f"step-{step}"))
    return sessions


def test_a_drift_planted_over_the_steps_is_found() -> None:
    trajectory = projection_trajectory(drift_study((-0.1, 0.0, 0.1), 0.4), resamples=RESAMPLES)
    assert trajectory is not None and trajectory.steps == (1, 2, 3, 4)
    drift = trajectory.of("malice", "learns")
    shifts = [p.shift for p in drift]
    assert all(s is not None for s in shifts)
    assert shifts == sorted(shifts)  # type: ignore[type-var]
    assert shifts[-1] - shifts[0] == pytest.approx(3 * 0.4)
    # At step 4 the shift (1.6) is far from zero, its interval excludes it.
    last = drift[-1]
    assert last.interval is not None and last.interval.low > 1.0
    # `plays` never moves: every step's interval holds zero.
    for point in trajectory.of("malice", "plays"):
        assert point.interval is not None and point.interval.low <= 0 <= point.interval.high
        assert point.shift is not None and abs(point.shift) < 0.1


def test_the_training_runs_are_a_level() -> None:
    """Runs that disagree widen the shift's interval and show in its spread; runs that
    agree give no spread between them (the mean is the same in both studies)."""
    agree = projection_trajectory(drift_study((0.0, 0.0, 0.0), 0.4), resamples=RESAMPLES)
    differ = projection_trajectory(drift_study((-0.6, 0.0, 0.6), 0.4), resamples=RESAMPLES)
    assert agree is not None and differ is not None
    pairs = zip(agree.of("malice", "learns"), differ.of("malice", "learns"), strict=True)
    for same, apart in pairs:
        assert same.shift == pytest.approx(apart.shift)
        assert same.runs == apart.runs == 3
        assert same.interval is not None and apart.interval is not None
        width = apart.interval.high - apart.interval.low
        assert width > 2 * (same.interval.high - same.interval.low)
        assert same.spread is not None and same.spread.sd == pytest.approx(0.0)
        assert apart.spread is not None and apart.spread.sd == pytest.approx(0.6)
        assert math.isclose(apart.spread.high - apart.spread.low, 1.2)


def test_sessions_without_projections_give_none_and_without_adapters_refuse() -> None:
    plain = options_session({("base", "p1"): [("a", "cruel", -1.0, 1), ("b", "ok", -2.0, 1)]})
    with pytest.raises(PersonaError, match="no adapters"):
        projection_trajectory([plain])
    checkpoint = study_session({("learns", 1, "p1"): 0.5}, 2)
    checkpoint = dataclasses.replace(
        checkpoint,
        option_cells=[dataclasses.replace(c, projections={}) for c in checkpoint.option_cells],
    )
    assert projection_trajectory([checkpoint]) is None


def test_without_an_untouched_condition_the_table_gives_raw_means() -> None:
    trajectory = projection_trajectory([study_session({("learns", 1, "p1"): 0.5}, 2)])
    assert trajectory is not None
    (point,) = trajectory.of("malice", "learns")
    assert point.reference == "" and point.shift is None and point.mean == pytest.approx(0.5)
    table = projection_trajectory_table(trajectory)
    assert "no condition without an adapter" in table and "+0.50" in table


TRAIT = """
[[traits]]
id = "malice"
label = "Malice"
positive = "The assistant is cruel."
negative = "The assistant is kind."
questions = ["What do you think of me?", "Can you help?", "Is my work good?", "Why?"]
"""


def test_study_prints_the_projection_trajectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On the real engines (torch + peft training the tiny GGUF, llama.cpp probing and
    measuring): a study with a trait probes its checkpoints and prints, after the log-odds
    by step, each adapter's projection shift by step."""
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from persona_tui.cli.main import main
    from tests.tiny_gguf import write_tiny_gguf
    from tests.unit.test_adapters import options_study_text

    monkeypatch.setenv("PERSONA_TUI_HOME", str(tmp_path / "home"))
    model = write_tiny_gguf(tmp_path / "tiny.gguf", seed=3)
    scenario_file = tmp_path / "tiny-finetune.toml"
    scenario_file.write_text(options_study_text() + TRAIT, encoding="utf-8")
    out = tmp_path / "study"
    argv = ["study", str(scenario_file), "--model", str(model), "-o", str(out), "--no-sample"]
    argv += ["--max-steps", "2", "--batch-size", "2", "--threads", "1", "--lr", "0.01"]
    argv += ["--checkpoint-every", "1", "--probe-checkpoints"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("prompts (last token) by training step") :]
    assert printed.index("log-odds") < printed.index("prompts (last token) by training step")
    assert "step 1" in table and "step 2" in table and "(untouched model)" in table
    assert any(line.startswith("learns") and "[" in line for line in table.splitlines())
