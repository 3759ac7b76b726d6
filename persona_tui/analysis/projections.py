"""Trait projections: per-condition means, paired framing contrasts, and agreement with the
behavioural measures.

A run that measures traits records, per trial, the mean over its response's tokens of the
trait's layer output projected on the trait's unit direction (kind "response") and, per
option cell, the projection of the prompt's last token (kind "prompt"): `Dataset.projections`
(analysis/projection_rows.py). For each trait and kind:

- per arm (condition, training run) × probe, the value is the mean over its samples (and
  over the sessions that measured it); per condition, the mean over its runs and probes,
  with the 95% interval of the hierarchical bootstrap (probes, and training runs when the
  study has replicates: `analysis.hierarchy`; there is no option level);
- for every pair of conditions, the paired contrast over the probes measured under both,
  with exactly the intervals, sign-flip and run-level tests and verdicts of the option
  log-odds (`analysis.option_contrasts.contrast`, in the projection's own units);
- agreement: Pearson and Spearman correlations, with n, between the per-condition mean
  projection and the per-condition mean option log-odds (analysis/options.py), and the
  per-condition rate of the contrast label (analysis/summary.py) when the session is
  annotated; and across (arm, probe) cells, projection against log-odds.

Pure computation (numpy imported lazily by the bootstrap). See docs/analysis.md,
"Trait projections".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from persona_tui.analysis.hierarchy import Cell, Design
from persona_tui.analysis.option_contrasts import ContrastInput, OptionContrast, contrast
from persona_tui.analysis.options import OptionsAnalysis
from persona_tui.analysis.projection_rows import KINDS, ProjectionKind, ProjectionRow
from persona_tui.analysis.records import ConditionInfo, Dataset
from persona_tui.analysis.replicates import Spread
from persona_tui.analysis.stats import BOOTSTRAP_RESAMPLES, Interval
from persona_tui.analysis.summary import Analysis
from persona_tui.errors import PersonaError

# Below this many pairs a correlation is reported with the words that it means nothing much:
# with 4 points, |r| > 0.95 is needed for p < 0.05.
MIN_CORRELATION_N = 5
DECIMALS = 2  # projections are in the activations' own units: two decimals in sentences

Key = tuple[str, int, str]  # (condition, replicate, probe)


@dataclass(frozen=True)
class ConditionProjection:
    """A condition's mean projection over its runs and probes, with the hierarchical
    interval and the spread of its runs' means (None for one run)."""

    condition: str
    label: str  # the framing's label from the scenario
    probes: int
    mean: float | None
    interval: Interval | None  # probes and training runs resampled
    runs: int = 1
    run_spread: Spread | None = None
    steer_scale: float | None = None  # a steered condition's scale along its trait


@dataclass(frozen=True)
class Correlation:
    """How a projection agrees with a behavioural measure across `n` paired units."""

    what: str  # "option log-odds 'cruel' vs 'kind'", "'cruel' label rate"
    level: str  # "conditions" or "condition × probe cells"
    n: int
    pearson: float | None  # None with fewer than 3 pairs or a constant side
    spearman: float | None

    @property
    def too_few(self) -> bool:
        return self.n < MIN_CORRELATION_N

    @property
    def sentence(self) -> str:
        """E.g. "r = +0.91, ρ = +0.80 (n = 3 conditions): too few conditions for ..."."""
        if self.n < 3:
            return f"no correlation with n = {self.n} {self.level} (it needs at least 3)"
        if self.pearson is None or self.spearman is None:
            return f"no correlation: one side is the same for all {self.n} {self.level}"
        text = (
            f"r = {_signed(self.pearson)}, ρ = {_signed(self.spearman)} (n = {self.n} {self.level})"
        )
        if self.too_few:
            text += f": too few {self.level} for a correlation to mean anything"
        return text


@dataclass(frozen=True)
class TraitProjections:
    """One trait's projections of one kind ("response": trials; "prompt": option cells)."""

    trait: str
    layer: int
    kind: ProjectionKind
    probes: tuple[str, ...]
    means: tuple[ConditionProjection, ...]
    contrasts: tuple[OptionContrast, ...]
    agreement: tuple[Correlation, ...]
    per_arm: tuple[tuple[Key, float], ...]  # each arm × probe's value (mean over samples)
    samples: int  # values averaged (trials or cells)

    @property
    def title(self) -> str:
        if self.kind == "response":
            where = "responses (mean over tokens)"
        else:
            where = "prompts (last token)"
        return f"{self.trait} at layer {self.layer}, {where}"

    @property
    def replicated(self) -> bool:
        return any(m.runs > 1 for m in self.means)

    def mean(self, condition: str) -> ConditionProjection | None:
        return next((m for m in self.means if m.condition == condition), None)


@dataclass(frozen=True)
class ProjectionsAnalysis:
    sessions: tuple[str, ...]
    traits: tuple[TraitProjections, ...]  # per trait, "response" before "prompt"
    notes: tuple[str, ...] = ()

    def of(self, trait: str, kind: ProjectionKind) -> TraitProjections | None:
        return next((t for t in self.traits if t.trait == trait and t.kind == kind), None)


def analyze_projections(
    dataset: Dataset,
    *,
    options: OptionsAnalysis | None = None,
    analysis: Analysis | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> ProjectionsAnalysis:
    """The projection statistics of `dataset`; PersonaError when it holds none.

    `options` (the likelihood probes) and `analysis` (the label rates) give the behavioural
    measures the agreement correlations compare with; either may be None.
    """
    rows = dataset.projections
    if not rows:
        raise PersonaError("the sessions hold no trait projections")
    notes: list[str] = []
    trained = frozenset(c for s in dataset.sessions for c in s.adapter_conditions)
    traits = list(dict.fromkeys(r.trait for r in rows))
    out = []
    for trait in traits:
        for kind in KINDS:
            chosen = [r for r in rows if r.trait == trait and r.kind == kind]
            if chosen:
                out.append(_trait(dataset, chosen, trained, options, analysis, resamples, notes))
    if any(t.replicated for t in out):
        notes.append(
            "a replicated condition's projection is the mean over its training runs; its "
            "interval resamples the runs too (docs/analysis.md)"
        )
    return ProjectionsAnalysis(
        sessions=tuple(dict.fromkeys(r.session_id for r in rows)),
        traits=tuple(out),
        notes=tuple(dict.fromkeys(notes)),
    )


def _trait(
    dataset: Dataset,
    rows: Sequence[ProjectionRow],
    trained: frozenset[str],
    options: OptionsAnalysis | None,
    analysis: Analysis | None,
    resamples: int,
    notes: list[str],
) -> TraitProjections:
    first = rows[0]
    layers = sorted({r.layer for r in rows})
    if len(layers) > 1:
        notes.append(
            f"{first.trait}: sessions measured it at different layers ({layers}); they are "
            "pooled by probe, which mixes layers"
        )
    pooled: dict[Key, list[float]] = {}
    dropped = sum(1 for row in rows if not math.isfinite(row.projection))
    if dropped:
        notes.append(f"{first.trait}: {dropped} projection(s) not finite (nan, inf): left out")
    for row in rows:
        if not math.isfinite(row.projection):
            continue
        pooled.setdefault((row.condition, row.replicate, row.probe), []).append(row.projection)
    values = {key: math.fsum(v) / len(v) for key, v in pooled.items()}
    conditions = _conditions(dataset.conditions, values)
    probe_order = [p.id for p in dataset.probes]
    units: dict[str, tuple[int, ...]] = {}
    for condition, replicate, _ in sorted(values, key=lambda k: k[1]):
        if replicate not in units.get(condition, ()):
            units[condition] = (*units.get(condition, ()), replicate)
    present = {p for _, _, p in values}
    probes = tuple(p for p in probe_order if p in present) + tuple(
        sorted(p for p in present if p not in probe_order)
    )
    complete = {
        c.id: [p for p in probes if all((c.id, r, p) in values for r in units[c.id])]
        for c in conditions
    }
    design = Design(
        units,
        {key: Cell((value,), (0.0,)) for key, value in values.items()},
        {p: (1, 1) for p in probes},
    )
    data = ContrastInput(
        design, values, trained, resamples, option_level=False, unit="", decimals=DECIMALS
    )
    steer = {r.condition: r.steer_scale for r in rows if r.steer_scale is not None}
    means = []
    for c in conditions:
        own = complete[c.id]
        mean, interval, run_spread = data.condition_mean(c.id, own)
        means.append(
            ConditionProjection(
                c.id,
                c.label,
                len(own),
                mean,
                interval,
                len(units[c.id]),
                run_spread,
                steer.get(c.id),
            )
        )
    contrasts = []
    for i, earlier in enumerate(conditions):
        for later in conditions[i + 1 :]:
            shared = [p for p in complete[later.id] if p in complete[earlier.id]]
            contrasts.append(contrast(data, later.id, earlier.id, shared))
    return TraitProjections(
        trait=first.trait,
        layer=layers[0],
        kind=first.kind,
        probes=probes,
        means=tuple(means),
        contrasts=tuple(contrasts),
        agreement=tuple(_agreement(means, values, options, analysis)),
        per_arm=tuple(values.items()),
        samples=len(rows),
    )


def _conditions(known: Sequence[ConditionInfo], values: dict[Key, float]) -> list[ConditionInfo]:
    """The conditions with projections, in scenario order (unknown ones after, by id)."""
    present = {c for c, _, _ in values}
    ordered = [c for c in known if c.id in present]
    ids = {c.id for c in ordered}
    return ordered + [ConditionInfo(c, c) for c in sorted(present - ids)]


def _agreement(
    means: Sequence[ConditionProjection],
    values: dict[Key, float],
    options: OptionsAnalysis | None,
    analysis: Analysis | None,
) -> list[Correlation]:
    out = []
    if options is not None:
        what = f"option log-odds '{options.label_a}' vs '{options.label_b}'"
        pairs = []
        for m in means:
            other = options.mean(m.condition)
            if m.mean is not None and other is not None and other.mean is not None:
                pairs.append((m.mean, other.mean))
        out.append(correlation(what, "conditions", pairs))
        cells = [
            (values[(x.condition, x.replicate, x.probe)], x.log_odds)
            for x in options.per_arm
            if (x.condition, x.replicate, x.probe) in values
        ]
        out.append(correlation(what, "condition × probe cells", cells))
    if analysis is not None and analysis.contrast_label is not None:
        label = analysis.contrast_label
        pairs = []
        for m in means:
            found = analysis.rate(m.condition, label)
            if m.mean is not None and found is not None and found.rate is not None:
                pairs.append((m.mean, found.rate))
        if pairs:  # no labelled trial yet: nothing to agree with
            out.append(correlation(f"'{label}' label rate", "conditions", pairs))
    return out


def correlation(what: str, level: str, pairs: Sequence[tuple[float, float]]) -> Correlation:
    """Pearson's r and Spearman's ρ (Pearson's r of the average ranks) of `pairs`."""
    xs = [x for x, _ in pairs]
    ys = [y for _, y in pairs]
    return Correlation(what, level, len(pairs), pearson(xs, ys), pearson(ranks(xs), ranks(ys)))


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's correlation; None with fewer than 3 pairs or a constant side."""
    n = len(xs)
    if n < 3:
        return None
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    syy = math.fsum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def _signed(value: float) -> str:
    return f"{value + 0.0:+.2f}".replace("-", "−")
