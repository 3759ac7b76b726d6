"""A training study's trajectory: the likelihood probes' log-odds against the training step.

Misalignment in small models can appear late, or suddenly, so one end-of-training number
can miss it. `study --probe-checkpoints` probes every kept checkpoint of every training run
in a session of its own (`session-3-runs-step-10.toml`: each adapter condition with the
adapters of that step, options only) beside the study's session (the finished adapters
and the untouched model). `training_trajectory` reads them: per adapter condition and step
the mean log-odds over its runs and probes with its 95% interval (probes, runs and options
resampled, analysis/options.py) and the spread between its runs; the conditions without an
adapter are the reference (the untouched model: where every run starts at step 0).
`trajectory_table` prints it, `save_trajectory_plot` draws it (mean line, run spread band).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from persona_tui._util.deps import require
from persona_tui.analysis.option_contrasts import nats
from persona_tui.analysis.options import analyze_options
from persona_tui.analysis.plots import check_plot_path, write_figure
from persona_tui.analysis.records import dataset_of
from persona_tui.analysis.replicates import Spread
from persona_tui.analysis.stats import BOOTSTRAP_RESAMPLES, Interval
from persona_tui.errors import PersonaError
from persona_tui.session.model import Session


@dataclass(frozen=True)
class TrajectoryPoint:
    """One adapter condition's log-odds at one training step."""

    condition: str
    step: int
    mean: float
    interval: Interval | None
    runs: int
    spread: Spread | None  # of the runs' means over the probes


@dataclass(frozen=True)
class Trajectory:
    label_a: str
    label_b: str
    steps: tuple[int, ...]
    points: tuple[TrajectoryPoint, ...]
    reference: tuple[tuple[str, float], ...]  # conditions without adapters: their means

    def of(self, condition: str) -> list[TrajectoryPoint]:
        return [p for p in self.points if p.condition == condition]

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.condition for p in self.points))


def session_step(session: Session) -> int | None:
    """The training step of a session's adapters (all the same in a trajectory's
    sessions); None for a session without adapters."""
    steps = {a.steps for a in session.header.adapters}
    if not steps:
        return None
    if len(steps) > 1:
        raise PersonaError(
            f"{session.path}: its adapters were trained for different numbers of steps "
            f"({', '.join(map(str, sorted(steps)))}): not one point of a trajectory"
        )
    return steps.pop()


def training_trajectory(
    sessions: Sequence[Session],
    labels: tuple[str, str] | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> Trajectory:
    """The trajectory of a study's sessions (its final session and its checkpoints')."""
    points: list[TrajectoryPoint] = []
    reference: dict[str, float] = {}
    label_a = label_b = ""
    for session in sorted(sessions, key=lambda s: session_step(s) or 0):
        step = session_step(session)
        if step is None:
            raise PersonaError(f"{session.path}: no adapters, so no step of a training run")
        analysis = analyze_options(dataset_of([session]), labels, resamples=resamples)
        label_a, label_b = analysis.label_a, analysis.label_b
        adapted = {a.condition for a in session.header.adapters}
        for mean in analysis.means:
            if mean.mean is None:
                continue
            if mean.condition not in adapted:
                reference.setdefault(mean.condition, mean.mean)
                continue
            points.append(
                TrajectoryPoint(
                    mean.condition, step, mean.mean, mean.interval, mean.runs, mean.run_spread
                )
            )
    if not points:
        raise PersonaError("no adapter condition has scored options: nothing to follow")
    steps = tuple(sorted({p.step for p in points}))
    return Trajectory(label_a, label_b, steps, tuple(points), tuple(reference.items()))


def trajectory_table(trajectory: Trajectory) -> str:
    """Rows of conditions, columns of steps: "mean ±SD between runs" (the SD only with
    several runs), and the untouched model's conditions as the reference (step 0)."""
    lines = [
        f"log-odds '{trajectory.label_a}' vs '{trajectory.label_b}' (nats) by training step: "
        "mean over runs and probes (± SD between runs)"
    ]
    width = max(len(c) for c in (*trajectory.conditions, *dict(trajectory.reference), "base"))
    head = "".join(f"{f'step {s}':>14}" for s in trajectory.steps)
    lines.append(f"{'':<{width}}{head}")
    for condition in trajectory.conditions:
        cells = {p.step: p for p in trajectory.of(condition)}
        row = ""
        for step in trajectory.steps:
            point = cells.get(step)
            if point is None:
                row += f"{'—':>14}"
                continue
            sd = point.spread.sd if point.spread is not None else None
            text = nats(point.mean, signed=True) + (f" ±{sd:.2f}" if sd is not None else "")
            row += f"{text:>14}"
        lines.append(f"{condition:<{width}}{row}")
    for condition, mean in trajectory.reference:
        lines.append(f"{condition:<{width}}{nats(mean, signed=True):>14}  (untouched model)")
    return "\n".join(lines)


def save_trajectory_plot(trajectory: Trajectory, path: Path, dpi: int = 200) -> Path:
    """Each adapter condition's mean log-odds against the step (step 0: the untouched
    model, when the study has one condition without adapters), the band its runs span,
    and the untouched model's conditions as dashed lines; PNG, SVG or PDF."""
    check_plot_path(path)
    require("matplotlib", "plots")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 3.8))
    axes = figure.add_subplot()
    start = trajectory.reference[0][1] if len(trajectory.reference) == 1 else None
    for condition in trajectory.conditions:
        series = trajectory.of(condition)
        steps = [p.step for p in series]
        means = [p.mean for p in series]
        if start is not None:
            steps, means = [0, *steps], [start, *means]
        (line,) = axes.plot(steps, means, marker="o", markersize=3, label=condition)
        low = [p.spread.low if p.spread else p.mean for p in series]
        high = [p.spread.high if p.spread else p.mean for p in series]
        if start is not None:
            low, high = [start, *low], [start, *high]
        axes.fill_between(steps, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    for condition, mean in trajectory.reference:
        axes.axhline(mean, color="0.5", linewidth=0.8, linestyle="--")
        axes.annotate(condition, (0, mean), fontsize="small", color="0.4")
    axes.set_xlabel("training step")
    axes.set_ylabel(f"log-odds '{trajectory.label_a}' vs '{trajectory.label_b}' (nats)")
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_title("Mean over runs and probes; band: the runs' range", fontsize="medium")
    axes.legend(fontsize="small", frameon=False)
    return write_figure(figure, path, dpi)
