"""Likelihood probes: how much more likely one label's answers become under each framing.

Sessions hold, per condition × probe, the log-probability of every scored answer option
(`Dataset.options`, from `Session.option_cells`). From them:

- per probe and condition, the **log-odds** of label A against label B:
  `LME(logprobs of A's options) − LME(logprobs of B's options)`, LME the log-mean-exp
  (the log of the mean probability), so a label with more options is not favoured;
- per condition, the mean log-odds over probes, with a probe-bootstrap 95% interval;
- for every pair of conditions, the **paired contrast** over the probes scored under both:
  the mean of the per-probe differences, a probe-bootstrap 95% interval (10,000 seeded
  resamples of probes), a two-sided **sign-flip permutation** p-value (all 2^n sign
  patterns when 2^n ≤ 100,000, else 100,000 seeded random flips) and a verdict in words;
- the interval half-width this number of probes resolves (the power of the study), and
  the mean token count of each label's options (so length cannot silently explain a
  contrast).

Several sessions are pooled by probe: an option scored in several sessions (repeated runs
of a scenario) contributes the mean of its log-probabilities. Pure computation; the
bootstrap and the sign-flip test are `analysis.stats`'s (numpy, imported lazily: the
`analysis` extra). See docs/analysis.md, "Likelihood probes".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from persona_tui.analysis.records import ConditionInfo, Dataset
from persona_tui.analysis.stats import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    MIN_PROBES_SIGN_FLIP,
    Interval,
    bootstrap_mean_interval,
    sign_flip_p,
)
from persona_tui.errors import PersonaError

Verdict = str  # "higher", "lower", "no difference shown", "too few"


@dataclass(frozen=True)
class ProbeLogOdds:
    """log-odds(A vs B) of one probe under one condition, and how many options entered."""

    condition: str
    probe: str
    log_odds: float
    options_a: int
    options_b: int


@dataclass(frozen=True)
class ConditionLogOdds:
    """A condition's mean log-odds over its probes, with a probe-bootstrap interval."""

    condition: str
    label: str  # the framing's label from the scenario
    probes: int
    mean: float | None
    interval: Interval | None


@dataclass(frozen=True)
class OptionContrast:
    """`condition` − `reference` in log-odds, paired over the probes scored under both."""

    condition: str
    reference: str
    probes: int
    difference: float | None  # mean over probes of the per-probe differences, in nats
    interval: Interval | None  # probe bootstrap, 95%
    p_value: float | None  # two-sided sign-flip permutation test
    exact: bool  # p from every sign pattern (True) or from RANDOM_FLIPS random ones
    higher: int  # probes where the log-odds are higher under `condition`
    verdict: Verdict
    sentence: str  # the verdict in words, e.g. "no difference shown: +0.4 nats [−1.6, 2.4]"
    explanation: str = ""
    # Its conditions that ran with a LoRA adapter: one training run each, whose noise
    # between runs the probe interval does not contain (said in `explanation` too).
    single_runs: tuple[str, ...] = ()

    @property
    def half_width(self) -> float | None:
        """Half the interval's width: the smallest difference this contrast can resolve."""
        if self.interval is None:
            return None
        return (self.interval.high - self.interval.low) / 2


@dataclass(frozen=True)
class LabelTokens:
    """How long a label's options are: distinct (probe, option) pairs and mean tokens."""

    label: str
    options: int
    mean_tokens: float


@dataclass(frozen=True)
class OptionsAnalysis:
    label_a: str
    label_b: str
    labels_given: bool  # chosen by the caller (`--labels`) rather than by default
    sessions: tuple[str, ...]
    conditions: tuple[ConditionInfo, ...]
    probes: tuple[str, ...]  # probes with a log-odds under at least one condition
    per_probe: tuple[ProbeLogOdds, ...]
    means: tuple[ConditionLogOdds, ...]
    contrasts: tuple[OptionContrast, ...]
    tokens: tuple[LabelTokens, ...]  # every label options use, A and B first
    notes: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return f"log-odds of '{self.label_a}' vs '{self.label_b}'"

    def log_odds(self, condition: str, probe: str) -> float | None:
        return next(
            (x.log_odds for x in self.per_probe if x.condition == condition and x.probe == probe),
            None,
        )

    def mean(self, condition: str) -> ConditionLogOdds | None:
        return next((m for m in self.means if m.condition == condition), None)

    @property
    def resolvable(self) -> float | None:
        """The widest contrast half-width: differences this study can tell from none."""
        widths = [c.half_width for c in self.contrasts if c.half_width is not None]
        return max(widths) if widths else None

    @property
    def power_line(self) -> str:
        """The power of the study in words (what a "no difference shown" means)."""
        resolvable = self.resolvable
        n = max((c.probes for c in self.contrasts), default=len(self.probes))
        if resolvable is None:
            return f"with {n} probe(s) this study cannot resolve differences between framings"
        return (
            f"with {n} probes this study resolves differences of about ±{nats(resolvable)} nats "
            "(the widest half-width of the 95% intervals); a smaller true difference would "
            "read as 'no difference shown'"
        )


def nats(value: float, signed: bool = False) -> str:
    """A number of nats in the verdicts' style: one decimal, a true minus sign."""
    rounded = round(value, 1) + 0.0  # + 0.0 turns -0.0 into 0.0
    text = f"{rounded:+.1f}" if signed else f"{rounded:.1f}"
    return text.replace("-", "−")


def interval_nats(interval: Interval) -> str:
    return f"[{nats(interval.low)}, {nats(interval.high)}]"


def log_mean_exp(values: Sequence[float]) -> float:
    """log(mean(exp(values))), computed stably (−inf for no probability at all)."""
    if not values:
        raise ValueError("log_mean_exp of no values")
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(math.fsum(math.exp(v - top) for v in values) / len(values))


# ------------------------------------------------------------------ the analysis


def analyze_options(
    dataset: Dataset,
    labels: tuple[str, str] | None = None,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> OptionsAnalysis:
    """The likelihood-probe statistics of `dataset`; PersonaError when there are none.

    `labels=(A, B)` compares A against B; by default A is the first label marked
    `bad = true` that options use and B the first other label options use (in the
    scenario's label order).
    """
    rows = dataset.options
    if not rows:
        raise PersonaError("the sessions hold no scored answer options")
    used = list(dict.fromkeys(r.label for r in rows))
    order = [label.id for label in dataset.labels]
    used.sort(key=lambda label: order.index(label) if label in order else len(order))
    notes = list(dataset.warnings)
    if labels is not None:
        label_a, label_b = labels
        for label in (label_a, label_b):
            if label not in used:
                raise PersonaError(
                    f"no option has the label {label!r}; options use: {', '.join(used)}"
                )
        if label_a == label_b:
            raise PersonaError(f"compare two different labels, not {label_a!r} with itself")
    else:
        if len(used) < 2:
            raise PersonaError(
                f"every option has the label {used[0]!r}: log-odds need options of two labels"
            )
        bad = {label.id for label in dataset.labels if label.bad}
        label_a = next((label for label in used if label in bad), used[0])
        label_b = next(label for label in used if label != label_a)
        if label_a not in bad:
            notes.append(
                f"no option label is marked bad = true: comparing '{label_a}' with '{label_b}' "
                "(the first two in the scenario's order; choose with --labels A,B)"
            )

    # Pool sessions: each option's log-probability averaged over the sessions that scored it.
    pooled: dict[tuple[str, str], dict[tuple[str, str], list[float]]] = {}
    for row in rows:
        cell = pooled.setdefault((row.condition, row.probe), {})
        cell.setdefault((row.option, row.label), []).append(row.logprob)
    spread = max(
        (max(v) - min(v) for cell in pooled.values() for v in cell.values() if len(v) > 1),
        default=0.0,
    )
    if spread > 1e-6:
        notes.append(
            "an option's log-probability differs between sessions (by up to "
            f"{spread:.3g} nats): each option's values were averaged before the log-mean-exp"
        )
    models = sorted({r.model_sha256 for r in rows})
    if len(models) > 1:
        names = ", ".join(sorted({r.model_name for r in rows}))
        notes.append(f"options scored by different models ({names}) are pooled by probe")

    per_probe: list[ProbeLogOdds] = []
    skipped = 0
    condition_ids = [c.id for c in dataset.conditions]
    probe_ids = [p.id for p in dataset.probes]
    for condition in condition_ids:
        for probe in probe_ids:
            scored = pooled.get((condition, probe))
            if scored is None:
                continue
            a = [math.fsum(v) / len(v) for (_, lab), v in scored.items() if lab == label_a]
            b = [math.fsum(v) / len(v) for (_, lab), v in scored.items() if lab == label_b]
            if not a or not b:
                skipped += 1
                continue
            value = log_mean_exp(a) - log_mean_exp(b)
            if not math.isfinite(value):
                skipped += 1
                continue
            per_probe.append(ProbeLogOdds(condition, probe, value, len(a), len(b)))
    if skipped:
        notes.append(
            f"{skipped} condition × probe cell(s) left out: no options of '{label_a}' or of "
            f"'{label_b}', or a probability of 0"
        )
    by_condition: dict[str, dict[str, float]] = {}
    for x in per_probe:
        by_condition.setdefault(x.condition, {})[x.probe] = x.log_odds
    conditions = tuple(c for c in dataset.conditions if c.id in by_condition)
    present = {x.probe for x in per_probe}
    probes = tuple(p for p in probe_ids if p in present)

    means = []
    for c in conditions:
        values = [by_condition[c.id][p] for p in probes if p in by_condition[c.id]]
        means.append(
            ConditionLogOdds(
                c.id,
                c.label,
                len(values),
                math.fsum(values) / len(values) if values else None,
                bootstrap_mean_interval(values, resamples),
            )
        )
    trained = {c for s in dataset.sessions for c in s.adapter_conditions}
    contrasts = []
    for i, earlier in enumerate(conditions):
        for later in conditions[i + 1 :]:
            contrast = _contrast(
                later.id,
                earlier.id,
                by_condition[later.id],
                by_condition[earlier.id],
                probes,
                resamples,
            )
            runs = [c for c in (later.id, earlier.id) if c in trained]
            if runs:
                contrast = dataclasses.replace(
                    contrast,
                    explanation=_one_run(contrast.explanation, runs),
                    single_runs=tuple(runs),
                )
            contrasts.append(contrast)
    if len(conditions) < 2:
        notes.append("only one condition has options scored: there is nothing to contrast")
    tokens = _tokens(dataset, [label_a, label_b, *(u for u in used if u not in (label_a, label_b))])
    length_note = _length_note(tokens, label_a, label_b)
    if length_note:
        notes.append(length_note)
    return OptionsAnalysis(
        label_a=label_a,
        label_b=label_b,
        labels_given=labels is not None,
        sessions=tuple(dict.fromkeys(r.session_id for r in rows)),
        conditions=conditions,
        probes=probes,
        per_probe=tuple(per_probe),
        means=tuple(means),
        contrasts=tuple(contrasts),
        tokens=tokens,
        notes=tuple(notes),
    )


def _contrast(
    condition: str,
    reference: str,
    values: dict[str, float],
    reference_values: dict[str, float],
    probes: Sequence[str],
    resamples: int,
) -> OptionContrast:
    shared = [p for p in probes if p in values and p in reference_values]
    differences = [values[p] - reference_values[p] for p in shared]
    n = len(differences)
    difference = math.fsum(differences) / n if n else None
    interval = bootstrap_mean_interval(differences, resamples)
    permutation = sign_flip_p(differences)
    p_value, exact = permutation if permutation is not None else (None, False)
    higher = sum(1 for d in differences if d > 0)
    verdict, sentence, explanation = _verdict(
        condition, reference, n, difference, interval, p_value
    )
    return OptionContrast(
        condition,
        reference,
        n,
        difference,
        interval,
        p_value,
        exact,
        higher,
        verdict,
        sentence,
        explanation,
    )


def _verdict(
    condition: str,
    reference: str,
    n: int,
    difference: float | None,
    interval: Interval | None,
    p_value: float | None,
) -> tuple[Verdict, str, str]:
    """(verdict, sentence, explanation): a claim only when interval and test agree."""
    if difference is None or interval is None or n < 2:
        return (
            "too few",
            f"too few probes for a claim: {n} scored under both",
            "the probe bootstrap needs at least 2 probes scored under both conditions",
        )
    estimate = f"{nats(difference, signed=True)} nats {interval_nats(interval)}"
    if n < MIN_PROBES_SIGN_FLIP:
        return (
            "too few",
            f"too few probes for a claim: {estimate}",
            f"with {n} probes a sign-flip test cannot reach p < {ALPHA} "
            f"(it needs at least {MIN_PROBES_SIGN_FLIP})",
        )
    excludes_zero = interval.low > 0 or interval.high < 0
    significant = p_value is not None and p_value < ALPHA
    if excludes_zero and significant:
        direction = "higher" if difference > 0 else "lower"
        return direction, f"{direction} under {condition} than {reference}: {estimate}", ""
    explanation = f"this contrast resolves differences of about ±{nats(_half(interval))} nats"
    if excludes_zero != significant:
        explanation += (
            "; the bootstrap interval and the permutation test disagree, so no claim is made"
        )
    return "no difference shown", f"no difference shown: {estimate}", explanation


def one_run_note(conditions: Sequence[str]) -> str:
    """Adapter conditions are single training runs: what their intervals leave out."""
    if len(conditions) > 1:
        runs = f"{' and '.join(conditions)} are one training run each (one LoRA adapter)"
    else:
        runs = f"{conditions[0]} is one training run (one LoRA adapter)"
    return f"{runs}: the interval covers the probes, not the noise between training runs"


def _one_run(explanation: str, conditions: Sequence[str]) -> str:
    note = one_run_note(conditions)
    return f"{explanation}; {note}" if explanation else note


def _half(interval: Interval) -> float:
    return (interval.high - interval.low) / 2


def _tokens(dataset: Dataset, labels: Sequence[str]) -> tuple[LabelTokens, ...]:
    """Mean token count per label over its distinct options (probe, option id)."""
    lengths: dict[str, dict[tuple[str, str], list[int]]] = {}
    for row in dataset.options:
        lengths.setdefault(row.label, {}).setdefault((row.probe, row.option), []).append(
            row.n_tokens
        )
    out = []
    for label in labels:
        options = lengths.get(label, {})
        if not options:
            continue
        per_option = [math.fsum(v) / len(v) for v in options.values()]
        out.append(LabelTokens(label, len(per_option), math.fsum(per_option) / len(per_option)))
    return tuple(out)


def _length_note(tokens: Sequence[LabelTokens], label_a: str, label_b: str) -> str:
    found = {t.label: t for t in tokens}
    a, b = found.get(label_a), found.get(label_b)
    if a is None or b is None or min(a.mean_tokens, b.mean_tokens) <= 0:
        return ""
    ratio = max(a.mean_tokens, b.mean_tokens) / min(a.mean_tokens, b.mean_tokens)
    if ratio < 1.25:
        return ""
    longer, shorter = (a, b) if a.mean_tokens > b.mean_tokens else (b, a)
    return (
        f"'{longer.label}' options are longer than '{shorter.label}' ones "
        f"({longer.mean_tokens:.1f} vs {shorter.mean_tokens:.1f} tokens on average): a "
        "condition's mean log-odds partly reflects length; the contrasts compare the same "
        "options under two framings, so length cancels there"
    )
