"""A training study's trait projections against the training step: each adapter's shift
from the untouched model along each trait, over training (issue 23, "Monitoring training").

Beside the log-odds trajectory (analysis/trajectory.py): `study --probe-checkpoints`
probes each kept checkpoint in a session of its own (options only, the adapter conditions
only), so a checkpoint's projections are its option cells' (kind "prompt": the prompt's
last token at the trait's layer); the final session has both kinds, and the prompt kind is
used throughout so every step measures the same thing. For each trait, adapter condition and
step: the adapter's mean projection over its runs and probes, minus the reference's (a
condition without an adapter: the untouched model, from whichever session measured it),
with the 95% interval and the spread between runs of that paired contrast, exactly as
`analyze_projections` gives them (probes and training runs resampled,
analysis/option_contrasts.py): this module only picks each step's rows and reads the
results. With several conditions without an adapter, each adapter is compared with each.
Pure computation; see docs/training-studies.md, "Checkpoints: the trajectory".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from persona_tui.analysis.option_contrasts import OptionContrast, figure
from persona_tui.analysis.projection_rows import ProjectionRow, projection_rows
from persona_tui.analysis.projections import (
    DECIMALS,
    ConditionProjection,
    TraitProjections,
    analyze_projections,
)
from persona_tui.analysis.records import dataset_of
from persona_tui.analysis.replicates import Spread
from persona_tui.analysis.stats import BOOTSTRAP_RESAMPLES, Interval
from persona_tui.analysis.trajectory import session_step
from persona_tui.errors import PersonaError
from persona_tui.session.model import Session

KIND = "prompt"  # the only kind a checkpoint session records (options only)
CELL = 28  # a table cell: "+0.12 [+0.01, +0.20] ±0.03"


@dataclass(frozen=True)
class ShiftPoint:
    """One adapter condition's projection on one trait at one training step."""

    trait: str
    condition: str
    reference: str  # the condition without an adapter it is compared with; "" for none
    step: int
    mean: float | None  # the adapter's mean over its runs and probes
    shift: float | None  # minus the reference's, paired over the probes both measured
    interval: Interval | None  # 95% of the shift: probes and training runs resampled
    runs: int
    spread: Spread | None  # of the runs' shifts (None for one run)


@dataclass(frozen=True)
class ProjectionTrajectory:
    steps: tuple[int, ...]
    points: tuple[ShiftPoint, ...]
    layers: tuple[tuple[str, int], ...]  # trait -> its layer (the first session's)
    reference: tuple[tuple[str, str, float], ...]  # (trait, condition, mean) of the untouched

    @property
    def traits(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for t, _ in self.layers))

    def rows(self, trait: str) -> tuple[tuple[str, str], ...]:
        """The (condition, reference) pairs of `trait`, in order."""
        return tuple(
            dict.fromkeys((p.condition, p.reference) for p in self.points if p.trait == trait)
        )

    def of(self, trait: str, condition: str, reference: str | None = None) -> list[ShiftPoint]:
        """`condition`'s points on `trait` by step (against `reference`, or the first)."""
        if reference is None:
            pairs = [r for c, r in self.rows(trait) if c == condition]
            reference = pairs[0] if pairs else ""
        return [
            p
            for p in self.points
            if p.trait == trait and p.condition == condition and p.reference == reference
        ]


def projection_trajectory(
    sessions: Sequence[Session], resamples: int = BOOTSTRAP_RESAMPLES
) -> ProjectionTrajectory | None:
    """The projection trajectory of a study's sessions (its final session and its
    checkpoints'); None when none of them holds option cells' projections."""
    steps: dict[int, list[ProjectionRow]] = {}
    reference: list[ProjectionRow] = []
    for session in sessions:
        step = session_step(session)
        if step is None:
            raise PersonaError(f"{session.path}: no adapters, so no step of a training run")
        adapted = {a.condition for a in session.header.adapters}
        for row in projection_rows(session):
            if row.kind != KIND:
                continue
            if row.condition in adapted:
                steps.setdefault(step, []).append(row)
            else:
                reference.append(row)
    if not steps:
        return None
    dataset = dataset_of(sessions)
    points: list[ShiftPoint] = []
    layers: dict[str, int] = {}
    means: dict[tuple[str, str], float] = {}
    for step in sorted(steps):
        chosen = dataclasses.replace(dataset, projections=(*steps[step], *reference))
        for trait in analyze_projections(chosen, resamples=resamples).traits:
            layers.setdefault(trait.trait, trait.layer)
            adapted = {r.condition for r in steps[step] if r.trait == trait.trait}
            untouched = [m for m in trait.means if m.condition not in adapted]
            for m in untouched:
                if m.mean is not None:
                    means.setdefault((trait.trait, m.condition), m.mean)
            for m in trait.means:
                if m.condition in adapted:
                    points += _points(trait, m.condition, m.mean, m.runs, step, untouched)
    return ProjectionTrajectory(
        tuple(sorted(steps)),
        tuple(points),
        tuple(layers.items()),
        tuple((t, c, mean) for (t, c), mean in means.items()),
    )


def _points(
    trait: TraitProjections,
    condition: str,
    mean: float | None,
    runs: int,
    step: int,
    untouched: Sequence[ConditionProjection],
) -> list[ShiftPoint]:
    """`condition`'s point against each untouched condition (one without a shift if none)."""
    references = [m.condition for m in untouched]
    if not references:
        return [ShiftPoint(trait.trait, condition, "", step, mean, None, None, runs, None)]
    out = []
    for reference in references:
        found = _contrast(trait.contrasts, condition, reference)
        out.append(
            ShiftPoint(
                trait.trait,
                condition,
                reference,
                step,
                mean,
                found.difference if found else None,
                found.interval if found else None,
                runs,
                found.run_spread if found else None,
            )
        )
    return out


def _contrast(
    contrasts: Sequence[OptionContrast], condition: str, reference: str
) -> OptionContrast | None:
    """`condition` − `reference` among `contrasts` (which hold each pair once, in either
    order: the reversed one is negated)."""
    for c in contrasts:
        if (c.condition, c.reference) == (condition, reference):
            return c
        if (c.condition, c.reference) == (reference, condition):
            return dataclasses.replace(
                c,
                condition=condition,
                reference=reference,
                difference=None if c.difference is None else -c.difference,
                interval=None
                if c.interval is None
                else Interval(-c.interval.high, -c.interval.low),
                run_spread=None
                if c.run_spread is None
                else Spread(
                    c.run_spread.units, c.run_spread.sd, -c.run_spread.high, -c.run_spread.low
                ),
            )
    return None


def projection_trajectory_table(trajectory: ProjectionTrajectory) -> str:
    """Per trait, rows of adapter conditions, columns of steps: "shift [95% interval] ±SD
    between runs" (the SD only with several runs), then the untouched model's means."""
    lines: list[str] = []
    for trait in trajectory.traits:
        layer = dict(trajectory.layers)[trait]
        pairs = trajectory.rows(trait)
        several = len({r for _, r in pairs}) > 1
        names = {pair: f"{pair[0]} − {pair[1]}" if several else pair[0] for pair in pairs}
        refs = [(c, m) for t, c, m in trajectory.reference if t == trait]
        if lines:
            lines.append("")
        if refs:
            what = (
                "projection shift from the untouched model (the adapter's mean over runs and "
                "probes minus the untouched model's) [95% interval: probes and runs "
                "resampled] (± SD between runs)"
            )
        else:
            what = (
                "mean projection over runs and probes (no condition without an adapter to "
                "subtract) (± SD between runs)"
            )
        lines.append(f"{trait} at layer {layer}, prompts (last token) by training step: {what}")
        width = max(len(n) for n in (*names.values(), *(c for c, _ in refs), "base"))
        lines.append(f"{'':<{width}}" + "".join(f"{f'step {s}':>{CELL}}" for s in trajectory.steps))
        for pair in pairs:
            cells = {p.step: p for p in trajectory.of(trait, *pair)}
            row = "".join(f"{_cell(cells.get(s)):>{CELL}}" for s in trajectory.steps)
            lines.append(f"{names[pair]:<{width}}{row}")
        for condition, mean in refs:
            lines.append(f"{condition:<{width}}{_number(mean):>{CELL}}  (untouched model)")
    return "\n".join(lines)


def _cell(point: ShiftPoint | None) -> str:
    if point is None:
        return "—"
    value = point.shift if point.reference else point.mean
    if value is None:
        return "—"
    text = _number(value)
    if point.reference and point.interval is not None:
        low, high = (_number(x) for x in (point.interval.low, point.interval.high))
        text += f" [{low}, {high}]"
    if point.spread is not None and point.spread.sd is not None:
        text += f" ±{point.spread.sd:.{DECIMALS}f}"
    return text


def _number(value: float) -> str:
    return figure(value, signed=True, decimals=DECIMALS)
