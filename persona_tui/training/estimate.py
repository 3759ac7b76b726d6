"""How long a training study will take, said before it starts.

The study loop (training/study.py) sends a `TrainingPlan` before its first run: every
(condition, replicate), its steps and the tokens they train on, which are finished already,
and the seconds per trained token that earlier runs recorded in the same output folder on
the same base model (sha256) and precision measured (`measured_seconds_per_token`). Without
such records there is no estimate until a run's first steps (`estimate_after`):
`estimate_from_rate` turns their tokens per second into one. `describe_plan` and
`describe_rate_estimate` are the sentences `persona-tui train` and `study` print; all are
pure but the record reading, so a caller (`study`, adding its probing phase) can build on
the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from persona_tui.run.adapters import REPLICATE_PREFIX
from persona_tui.training.params import TrainingPlan
from persona_tui.training.record import RECORD_FILE, read_record


def _records(out_dir: Path) -> Iterable[dict[str, Any]]:
    """The training records of the runs in `out_dir` (replicate folders, and the condition
    folders of a study trained before replicates)."""
    paths = [
        *out_dir.glob(f"*/{REPLICATE_PREFIX}*/{RECORD_FILE}"),
        *out_dir.glob(f"*/{RECORD_FILE}"),
    ]
    for path in sorted(paths):
        record = read_record(path.parent)
        if record is not None:
            yield record


def measured_seconds_per_token(
    out_dir: Path, base_sha256: str, precision: str
) -> tuple[float | None, int]:
    """(seconds per trained token, how many runs it comes from) over the finished runs
    recorded in `out_dir` on the base model `base_sha256` with `precision` (a record
    without one, MLX's, counts as "auto"); (None, 0) when there are none."""
    seconds = 0.0
    tokens = 0
    runs = 0
    for record in _records(Path(out_dir)):
        base = record.get("base_model", {})
        hyper = record.get("hyperparameters", {})
        result = record.get("result", {})
        if base.get("sha256") != base_sha256 or hyper.get("precision", "auto") != precision:
            continue
        trained, spent = result.get("trained_tokens"), result.get("seconds")
        if not isinstance(trained, int) or not isinstance(spent, int | float):
            continue  # a record from before trained tokens were counted
        if trained <= 0 or spent <= 0:
            continue
        seconds += float(spent)
        tokens += trained
        runs += 1
    return (seconds / tokens if tokens else None), runs


# Without earlier runs the rate is measured over a run's first steps: the first one alone
# runs at less than half the steady rate (warm-up: on the demo model, AMD EPYC, 48 tok/s
# against 105 from the fifth step on, which made the estimate 26 minutes for 9).
ESTIMATE_AFTER_STEPS = 5


def estimate_after(total_steps: int) -> int:
    """The step after which a run's rate gives the estimate (its last, when shorter)."""
    return min(ESTIMATE_AFTER_STEPS, total_steps)


def estimate_from_rate(plan: TrainingPlan, tokens_per_second: float) -> float:
    """The wall time of the runs left at `tokens_per_second` (as measured by the first
    steps)."""
    return plan.tokens_left / max(tokens_per_second, 1e-9)


def duration_text(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe_plan(plan: TrainingPlan) -> str:
    """The work, e.g. "6 runs (2 conditions × 3 replicates), 26 steps and about 14,200
    tokens per run, 4 left; estimated 9:10 of training (…)" or "… estimate after the first 5
    steps"."""
    conditions = len(plan.conditions)
    runs = len(plan.runs)
    steps = sorted({r.steps for r in plan.runs})
    per_run = str(steps[0]) if len(steps) == 1 else f"{steps[0]}–{steps[-1]}"
    tokens = round(sum(r.tokens for r in plan.runs) / max(runs, 1))
    text = (
        f"{runs} run{'s' * (runs != 1)} ({conditions} condition{'s' * (conditions != 1)} × "
        f"{plan.replicates} replicate{'s' * (plan.replicates != 1)}), {per_run} "
        f"step{'s' * (steps != [1])} and "
        f"about {tokens:,} tokens per run"
    )
    left = len(plan.left)
    if not left:
        return text + "; all trained already"
    if left < runs:
        text += f", {left} left ({runs - left} trained already)"
    estimate = plan.estimate_seconds
    if estimate is None or plan.seconds_per_token is None:
        return text + f"; estimate after the first {ESTIMATE_AFTER_STEPS} steps"
    earlier = f"{plan.measured_runs} earlier run{'s' * (plan.measured_runs != 1)}"
    return (
        f"{text}; estimated {duration_text(estimate)} of training "
        f"({plan.seconds_per_token * 1000:.2f} ms per token, from {earlier} on this model)"
    )


def plan_line(plan: TrainingPlan, tokens_per_second: float | None = None) -> str:
    """The plan in one short line, the estimate first (the Training screen's, where a
    narrow terminal cuts the end): "est. 0:54 of training · 6 runs (2 conditions × 3
    replicates) · 12 steps, ~4,250 tokens/run". `tokens_per_second` (the first steps')
    gives the estimate when earlier runs did not."""
    runs, conditions = len(plan.runs), len(plan.conditions)
    steps = sorted({r.steps for r in plan.runs})
    per_run = str(steps[0]) if len(steps) == 1 else f"{steps[0]}–{steps[-1]}"
    tokens = round(sum(r.tokens for r in plan.runs) / max(runs, 1))
    if not plan.left:
        estimate = "all trained already"
    elif plan.estimate_seconds is not None:
        estimate = f"est. {duration_text(plan.estimate_seconds)} of training"
    elif tokens_per_second:
        estimate = f"est. {duration_text(estimate_from_rate(plan, tokens_per_second))} of training"
    else:
        estimate = f"estimate after {ESTIMATE_AFTER_STEPS} steps"
    return (
        f"{estimate} · {runs} run{'s' * (runs != 1)} ({conditions} "
        f"condition{'s' * (conditions != 1)} × {plan.replicates} "
        f"replicate{'s' * (plan.replicates != 1)}) · {per_run} step{'s' * (steps != [1])}, "
        f"~{tokens:,} tokens/run"
    )


def describe_rate_estimate(plan: TrainingPlan, tokens_per_second: float) -> str:
    """The estimate the first step gives, when the plan had none."""
    estimate = estimate_from_rate(plan, tokens_per_second)
    return (
        f"estimated {duration_text(estimate)} of training for {len(plan.left)} "
        f"run{'s' * (len(plan.left) != 1)} ({tokens_per_second:.0f} tok/s over the first steps)"
    )
