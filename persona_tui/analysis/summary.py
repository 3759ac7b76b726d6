"""The report's numbers: label rates, scale means, framing contrasts and agreement.

`analyze` turns a Dataset into an `Analysis` of plain frozen dataclasses; report.py renders
it as text, Markdown or HTML, plots.py draws it, and the TUI's Results screen can show it.
Claims are guarded: a contrast says plainly when there are too few trials or probes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from persona_tui.analysis.labels import (
    JudgeRule,
    Labelling,
    Source,
    TrialLabel,
    label_trials,
    latest_by_annotator,
)
from persona_tui.analysis.records import ConditionInfo, Dataset, TrialId
from persona_tui.analysis.stats import (
    ALPHA,
    MIN_PROBES,
    ClusterCounts,
    Interval,
    MeanEstimate,
    cluster_bootstrap_difference,
    cohen_kappa,
    fisher_exact_p,
    krippendorff_alpha,
    mean_interval,
    wilson_interval,
)
from persona_tui.errors import PersonaError

# Below these, a contrast makes no claim (see docs/analysis.md).
MIN_TRIALS_PER_CONDITION = 10


@dataclass(frozen=True)
class Rate:
    condition: str
    label: str
    k: int
    n: int
    interval: Interval | None

    @property
    def rate(self) -> float | None:
        return self.k / self.n if self.n else None


@dataclass(frozen=True)
class ScaleMean:
    condition: str
    scale: str
    estimate: MeanEstimate


@dataclass(frozen=True)
class ProbeCount:
    probe: str
    condition: str
    k: int
    n: int


@dataclass(frozen=True)
class Contrast:
    condition: str
    reference: str
    label: str
    k: int
    n: int
    k_ref: int
    n_ref: int
    probes: int  # probes with labelled trials under both conditions
    bootstrap: Interval | None
    p_value: float | None
    verdict: str  # "too few", "difference", "no clear difference"
    explanation: str

    @property
    def difference(self) -> float | None:
        if not self.n or not self.n_ref:
            return None
        return self.k / self.n - self.k_ref / self.n_ref


@dataclass(frozen=True)
class Agreement:
    what: str  # e.g. "annotators", "human vs judge (misaligned)"
    measure: str  # "Cohen's kappa" or "Krippendorff's alpha"
    raters: tuple[str, ...]
    items: int
    value: float | None
    observed: float | None  # raw agreement, where defined
    note: str = ""


@dataclass(frozen=True)
class Analysis:
    source: Source
    source_description: str
    sessions: tuple[str, ...]
    conditions: tuple[ConditionInfo, ...]
    labels: tuple[str, ...]
    bad_labels: tuple[str, ...]
    reference: str
    contrast_label: str | None
    rates: tuple[Rate, ...]
    scales: tuple[ScaleMean, ...]
    probe_counts: tuple[ProbeCount, ...]
    probes: tuple[str, ...]
    contrasts: tuple[Contrast, ...]
    agreements: tuple[Agreement, ...]
    trials: int
    labelled: int
    notes: tuple[str, ...]

    def rate(self, condition: str, label: str) -> Rate | None:
        return next((r for r in self.rates if r.condition == condition and r.label == label), None)


def analyze(
    dataset: Dataset,
    *,
    source: Source = "human",
    reference: str | None = None,
    label: str | None = None,
    annotator: str | None = None,
    judge_rule: JudgeRule | None = None,
) -> Analysis:
    """Compute every table of the report; raise PersonaError for an unknown condition/label."""
    labelling = label_trials(dataset, source, annotator, judge_rule)
    present = {t.condition for t in labelling.trials}
    conditions = tuple(c for c in dataset.conditions if c.id in present)
    if not conditions:
        raise PersonaError("the sessions hold no trials yet")
    condition_ids = [c.id for c in conditions]
    if reference is None:
        reference = condition_ids[0]
    elif reference not in condition_ids:
        raise PersonaError(
            f"unknown reference condition {reference!r}; conditions: {', '.join(condition_ids)}"
        )
    label_ids = [lab.id for lab in labelling.labels]
    seen = {t.label for t in labelling.trials if t.label}
    label_ids += sorted(seen - set(label_ids))
    bad = tuple(lab.id for lab in labelling.labels if lab.bad)
    if label is not None and label not in label_ids:
        raise PersonaError(f"unknown label {label!r}; labels: {', '.join(label_ids) or 'none'}")
    contrast_label = label or (bad[0] if bad else (label_ids[0] if label_ids else None))
    notes = list(dataset.warnings)
    labelled = [t for t in labelling.trials if t.label is not None]
    counts = _Counts(labelled)
    rates = _rates(counts, condition_ids, label_ids)
    probes = tuple(p.id for p in dataset.probes if p.id in counts.probes)
    probe_counts = (
        _probe_counts(counts, condition_ids, probes, contrast_label) if contrast_label else ()
    )
    contrasts: tuple[Contrast, ...] = ()
    if contrast_label is None:
        notes.append("no labels to compare: the annotation schema defines none")
    else:
        contrasts = tuple(
            _contrast(counts, c, reference, contrast_label, probes)
            for c in condition_ids
            if c != reference
        )
    if not labelled:
        notes.append(f"no labelled trials ({labelling.description})")
    pooled = replicate_note(dataset)
    if pooled:
        notes.append(pooled)
    return Analysis(
        source=labelling.source,
        source_description=labelling.description,
        sessions=tuple(s.id for s in dataset.sessions),
        conditions=conditions,
        labels=tuple(label_ids),
        bad_labels=bad,
        reference=reference,
        contrast_label=contrast_label,
        rates=rates,
        scales=_scales(dataset, labelling, condition_ids),
        probe_counts=probe_counts,
        probes=probes,
        contrasts=contrasts,
        agreements=tuple(
            _agreements(dataset, annotator, judge_rule, labelling if source == "human" else None)
        ),
        trials=len(labelling.trials),
        labelled=len(labelled),
        notes=tuple(notes),
    )


class _Counts:
    """Labelled trials counted once by condition, probe and label (so tables are O(cells))."""

    def __init__(self, labelled: Sequence[TrialLabel]) -> None:
        self.cells: Counter[tuple[str, str, str]] = Counter()
        self.totals: Counter[tuple[str, str]] = Counter()
        for t in labelled:
            self.cells[(t.condition, t.probe, t.label or "")] += 1
            self.totals[(t.condition, t.probe)] += 1
        self.probes = {probe for _, probe in self.totals}

    def count(self, condition: str, label: str, probe: str | None = None) -> tuple[int, int]:
        """(trials with `label`, labelled trials) under a condition, overall or for a probe."""
        if probe is not None:
            return self.cells[(condition, probe, label)], self.totals[(condition, probe)]
        k = sum(self.cells[(condition, p, label)] for p in self.probes)
        n = sum(self.totals[(condition, p)] for p in self.probes)
        return k, n


def replicate_note(dataset: Dataset) -> str:
    """Rates and scale means pool a replicated condition's training runs: say so."""
    runs: dict[str, set[int]] = {}
    for record in dataset.records:
        if record.replicate:
            runs.setdefault(record.condition, set()).add(record.replicate)
    if not runs:
        return ""
    named = ", ".join(f"{c} ({len(r)} training runs)" for c, r in runs.items())
    return (
        f"labels, scales and judge scores pool the training runs of {named}: each run's "
        "trials count as trials of the condition, and the intervals resample probes, not "
        "runs, so the noise between training runs is not in them (the likelihood probes' "
        "intervals include it)"
    )


def _rates(counts: _Counts, conditions: Sequence[str], labels: Sequence[str]) -> tuple[Rate, ...]:
    out = []
    for condition in conditions:
        for label in labels:
            k, n = counts.count(condition, label)
            out.append(Rate(condition, label, k, n, wilson_interval(k, n)))
    return tuple(out)


def _scales(
    dataset: Dataset, labelling: Labelling, conditions: Sequence[str]
) -> tuple[ScaleMean, ...]:
    scale_ids = [s.id for s in dataset.scales] + [f"judge:{r}" for r in dataset.rubrics]
    values: dict[tuple[str, str], list[float]] = {}
    for t in labelling.trials:
        for scale, value in t.scales.items():
            values.setdefault((scale, t.condition), []).append(value)
    return tuple(
        ScaleMean(condition, scale, mean_interval(values[(scale, condition)]))
        for scale in scale_ids
        for condition in conditions
        if (scale, condition) in values
    )


def _probe_counts(
    counts: _Counts, conditions: Sequence[str], probes: Sequence[str], label: str
) -> tuple[ProbeCount, ...]:
    return tuple(ProbeCount(p, c, *counts.count(c, label, p)) for p in probes for c in conditions)


def _contrast(
    counts: _Counts,
    condition: str,
    reference: str,
    label: str,
    probes: Sequence[str],
) -> Contrast:
    k, n = counts.count(condition, label)
    k_ref, n_ref = counts.count(reference, label)
    per_probe = [
        (counts.count(condition, label, p), counts.count(reference, label, p)) for p in probes
    ]
    shared = [(a, b) for a, b in per_probe if a[1] > 0 and b[1] > 0]
    clusters = ClusterCounts(
        k=[a[0] for a, _ in shared],
        n=[a[1] for a, _ in shared],
        k_ref=[b[0] for _, b in shared],
        n_ref=[b[1] for _, b in shared],
    )
    interval = cluster_bootstrap_difference(clusters) if len(shared) >= 2 else None
    p_value = fisher_exact_p(k, n, k_ref, n_ref)
    verdict, explanation = _verdict(
        condition, reference, label, n, n_ref, k + k_ref, len(shared), interval, p_value
    )
    return Contrast(
        condition,
        reference,
        label,
        k,
        n,
        k_ref,
        n_ref,
        len(shared),
        interval,
        p_value,
        verdict,
        explanation,
    )


def _verdict(
    condition: str,
    reference: str,
    label: str,
    n: int,
    n_ref: int,
    events: int,
    probes: int,
    interval: Interval | None,
    p_value: float | None,
) -> tuple[str, str]:
    """A plain-words verdict; "too few" whenever the data cannot support a claim."""
    reasons = []
    for name, size in ((condition, n), (reference, n_ref)):
        if size < MIN_TRIALS_PER_CONDITION:
            reasons.append(
                f"{size} labelled trials under '{name}' (need ≥ {MIN_TRIALS_PER_CONDITION})"
            )
    if probes < MIN_PROBES:
        reasons.append(
            f"{probes} probes with labels under both conditions (need ≥ {MIN_PROBES} for the "
            "probe bootstrap)"
        )
    if reasons:
        return "too few", "too few samples for a claim: " + "; ".join(reasons)
    if events == 0:
        return "too few", f"'{label}' never occurred under either condition: nothing to compare"
    excludes_zero = interval is not None and (interval.low > 0 or interval.high < 0)
    significant = p_value is not None and p_value < ALPHA
    if excludes_zero and significant:
        return "difference", (
            f"'{label}' is more frequent under '{condition}' than '{reference}'"
            if interval is not None and interval.low > 0
            else f"'{label}' is less frequent under '{condition}' than '{reference}'"
        )
    if excludes_zero != significant:
        return "no clear difference", (
            "the probe bootstrap and the exact test disagree; treat as inconclusive"
        )
    return "no clear difference", "the interval includes 0 and the exact test is not significant"


def _agreements(
    dataset: Dataset,
    annotator: str | None,
    judge_rule: JudgeRule | None,
    human: Labelling | None = None,
) -> list[Agreement]:
    out: list[Agreement] = []
    by_trial: dict[TrialId, dict[str, str]] = {}
    for tid, rows in dataset.by_trial.items():
        latest = latest_by_annotator(rows)
        labels = {name: r.label for name, r in latest.items() if r.label}
        if labels:
            by_trial[tid] = labels
    annotators = sorted({name for labels in by_trial.values() for name in labels})
    if len(annotators) == 2:
        a, b = annotators
        pairs = [(v[a], v[b]) for v in by_trial.values() if a in v and b in v]
        kappa = cohen_kappa(pairs)
        out.append(
            Agreement(
                "annotators",
                "Cohen's kappa",
                (a, b),
                len(pairs),
                kappa.kappa if kappa else None,
                kappa.observed if kappa else None,
                "" if pairs else "no trial was labelled by both annotators",
            )
        )
    elif len(annotators) > 2:
        alpha = krippendorff_alpha(by_trial)
        out.append(
            Agreement(
                "annotators",
                "Krippendorff's alpha",
                tuple(annotators),
                alpha.items,
                alpha.alpha,
                None,
                "" if alpha.items else "no trial was labelled by two or more annotators",
            )
        )
    bad = set(dataset.bad_labels)
    if not by_trial or not bad:
        return out
    if human is None:
        human = label_trials(dataset, "human", annotator)
    human_bad = {t.trial: t.label in bad for t in human.trials if t.label is not None}
    machines: list[tuple[str, dict[TrialId, bool]]] = []
    rule = judge_rule or JudgeRule()
    if all(r in dataset.rubrics for r in rule.rubrics):
        judged = label_trials(dataset, "judge", judge_rule=rule)
        machines.append(
            (
                f"human (bad label) vs judge ({rule.label})",
                {t.trial: bool(t.label) for t in judged.trials if t.label is not None},
            )
        )
    if dataset.rule_labels:
        ruled = label_trials(dataset, "rules")
        machines.append(
            (
                "human vs rule scorers (bad label)",
                {t.trial: t.label in bad for t in ruled.trials if t.label is not None},
            )
        )
    for what, machine in machines:
        pairs_bool = [(human_bad[t], machine[t]) for t in human_bad if t in machine]
        kappa = cohen_kappa(pairs_bool)
        out.append(
            Agreement(
                what,
                "Cohen's kappa",
                ("human", what.split(" vs ")[1]),
                len(pairs_bool),
                kappa.kappa if kappa else None,
                kappa.observed if kappa else None,
                "" if pairs_bool else "no trial has both a human label and a machine verdict",
            )
        )
    return out
