"""One likelihood-probe contrast: its estimate, intervals by level, tests and verdict.

For a pair of conditions (`condition` − `reference`), over the probes every run of both
scored: the difference = mean over probes of (mean over the condition's runs − mean over
the reference's runs); three 95% intervals (probes only, probes + options, and the full
hierarchical one with the training runs: `analysis.hierarchy`), the run-level spread and
permutation test (`analysis.replicates`), the probe-level sign-flip p, and a verdict in
words that names the unit ("3 training runs per framing × 26 probes × 12 options").
The same machinery serves any per-(arm, probe) measure without options (trait projections,
analysis/projections.py): `ContrastInput(option_level=False, unit=..., decimals=...)`.
Pure computation; see docs/analysis.md, "Likelihood probes".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from persona_tui.analysis.hierarchy import Design, Resampler
from persona_tui.analysis.replicates import ReplicateTest, Spread, replicate_test, spread
from persona_tui.analysis.stats import (
    ALPHA,
    MIN_PROBES_SIGN_FLIP,
    Interval,
    bootstrap_mean_interval,
    sign_flip_p,
)

Verdict = str  # "higher", "lower", "no difference shown", "too few"


@dataclass(frozen=True)
class OptionContrast:
    """`condition` − `reference` in log-odds, paired over the probes scored under both."""

    condition: str
    reference: str
    probes: int
    difference: float | None  # mean over probes of the per-probe differences, in nats
    interval: Interval | None  # 95%, every level: probes, training runs, options
    p_value: float | None  # two-sided sign-flip permutation test over probes
    exact: bool  # p from every sign pattern (True) or from RANDOM_FLIPS random ones
    higher: int  # probes where the log-odds are higher under `condition`
    verdict: Verdict
    sentence: str  # e.g. "no difference shown: +0.4 nats [−1.6, 2.4] (7 probes × 8 options)"
    explanation: str = ""
    # Its conditions that ran with one LoRA adapter: one training run each, whose noise
    # between runs no interval contains (said in `explanation` too).
    single_runs: tuple[str, ...] = ()
    probe_interval: Interval | None = None  # probes alone (the interval before issue 22)
    options_interval: Interval | None = None  # probes and options, no training runs
    runs: tuple[int, int] = (1, 1)  # units (training runs) of condition and reference
    unit: str = ""  # "3 training runs per framing × 26 probes × 12 options"
    run_spread: Spread | None = None  # of the run-level differences (every pair of runs)
    run_test: ReplicateTest | None = None  # the permutation test at the run level

    @property
    def half_width(self) -> float | None:
        """Half the full interval's width: the smallest difference this contrast resolves."""
        return _half(self.interval)

    @property
    def half_widths(self) -> tuple[float | None, float | None, float | None]:
        """Half-widths of the probe-only, probes+options and full intervals: how much of
        the width each level adds."""
        return _half(self.probe_interval), _half(self.options_interval), _half(self.interval)


def figure(value: float, signed: bool = False, decimals: int = 1) -> str:
    """A number in the verdicts' style: `decimals` decimals, a true minus sign."""
    rounded = round(value, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    text = f"{rounded:+.{decimals}f}" if signed else f"{rounded:.{decimals}f}"
    return text.replace("-", "−")


def nats(value: float, signed: bool = False) -> str:
    """A number of nats in the verdicts' style: one decimal, a true minus sign."""
    return figure(value, signed)


def interval_nats(interval: Interval) -> str:
    return f"[{nats(interval.low)}, {nats(interval.high)}]"


def _half(interval: Interval | None) -> float | None:
    return None if interval is None else (interval.high - interval.low) / 2


@dataclass
class ContrastInput:
    """What a contrast needs from the analysis: the design, the point log-odds per run and
    probe, the conditions that were trained; and the bootstrap of each probe set, shared
    by every contrast and mean over it.

    A measure without options (a trait projection) sets `option_level=False` (its design's
    cells hold one value each) and the `unit` and `decimals` its sentences use."""

    design: Design
    log_odds: Mapping[tuple[str, int, str], float]  # (condition, replicate, probe)
    trained: frozenset[str]  # conditions that ran with LoRA adapters
    resamples: int
    _resamplers: dict[tuple[str, ...], Resampler] = field(default_factory=dict)
    option_level: bool = True  # the design has options to resample (and to name in the unit)
    unit: str = "nats"  # after a number in sentences; "" for none
    decimals: int = 1

    def resampler(self, probes: Sequence[str]) -> Resampler:
        """The (kept) bootstrap draws over `probes`, options resampled (if it has any)."""
        key = tuple(probes)
        found = self._resamplers.get(key)
        if found is None:
            found = self._resamplers[key] = Resampler(
                self.design, key, self.option_level, self.resamples
            )
        return found

    def condition_mean(
        self, condition: str, probes: Sequence[str]
    ) -> tuple[float | None, Interval | None, Spread | None]:
        """A condition's mean over its runs and `probes` (each run's mean over the probes,
        then their mean), its bootstrap interval and the spread of its runs' means."""
        runs = self.design.units[condition]
        run_means = [
            math.fsum(self.log_odds[(condition, r, p)] for p in probes) / len(probes)
            for r in runs
            if probes
        ]
        mean = math.fsum(run_means) / len(run_means) if run_means else None
        interval = self.resampler(probes).interval((condition,))
        return mean, interval, spread(run_means) if len(run_means) > 1 else None

    def number(self, value: float, signed: bool = False) -> str:
        """`value` with its unit ("+0.4 nats")."""
        text = figure(value, signed, self.decimals)
        return f"{text} {self.unit}" if self.unit else text

    def span(self, interval: Interval) -> str:
        """An interval in this measure's numbers ("[−1.6, 2.4]")."""
        low, high = (figure(x, decimals=self.decimals) for x in (interval.low, interval.high))
        return f"[{low}, {high}]"


def contrast(
    data: ContrastInput, condition: str, reference: str, probes: Sequence[str]
) -> OptionContrast:
    """`condition` − `reference` over `probes` (those every run of both scored)."""
    design = data.design
    runs_a, runs_b = design.units[condition], design.units[reference]

    def mean_over_runs(c: str, runs: Sequence[int], probe: str) -> float:
        return math.fsum(data.log_odds[(c, r, probe)] for r in runs) / len(runs)

    differences = [
        mean_over_runs(condition, runs_a, p) - mean_over_runs(reference, runs_b, p) for p in probes
    ]
    n = len(differences)
    difference = math.fsum(differences) / n if n else None
    pair = (condition, reference)
    resampler = data.resampler(probes)
    full = resampler.interval(pair, replicates=True)
    with_options = resampler.interval(pair, replicates=False)
    probe_only = bootstrap_mean_interval(differences, data.resamples)
    permutation = sign_flip_p(differences)
    p_value, exact = permutation if permutation is not None else (None, False)
    run_means = {
        c: [math.fsum(data.log_odds[(c, r, p)] for p in probes) / n if n else 0.0 for r in runs]
        for c, runs in ((condition, runs_a), (reference, runs_b))
    }
    run_spread = None
    run_test = None
    if n and (len(runs_a) > 1 or len(runs_b) > 1):
        run_spread = spread([x - y for x in run_means[condition] for y in run_means[reference]])
        fixed = (condition not in data.trained, reference not in data.trained)
        run_test = replicate_test(run_means[condition], run_means[reference], fixed)
    single = tuple(
        c
        for c, runs in ((condition, runs_a), (reference, runs_b))
        if c in data.trained and len(runs) == 1
    )
    unit = unit_sentence(
        ((condition, len(runs_a)), (reference, len(runs_b))),
        data.trained,
        n,
        [design.options(p) for p in probes] if data.option_level else [],
    )
    verdict, sentence, explanation = _verdict(
        data, condition, reference, n, difference, full, p_value, unit, run_test
    )
    if single:
        note = one_run_note(single)
        explanation = f"{explanation}; {note}" if explanation else note
    return OptionContrast(
        condition,
        reference,
        n,
        difference,
        full,
        p_value,
        exact,
        sum(1 for d in differences if d > 0),
        verdict,
        sentence,
        explanation,
        single,
        probe_only,
        with_options,
        (len(runs_a), len(runs_b)),
        unit,
        run_spread,
        run_test,
    )


def unit_sentence(
    runs: Sequence[tuple[str, int]],
    trained: frozenset[str],
    probes: int,
    options: Sequence[tuple[int, int]],
) -> str:
    """What the interval resamples: "3 training runs per framing × 26 probes × 12 options".

    `runs`: each condition and its number of units; `options`: per probe, A's and B's.
    """
    parts = []
    counted = [(c, k) for c, k in runs if c in trained]
    if counted:
        sizes = {k for _, k in counted}
        if len(counted) > 1 and len(sizes) == 1:
            k = counted[0][1]
            parts.append(f"{k} training run{'s' if k > 1 else ''} per framing")
        else:
            parts.append(
                ", ".join(f"{k} training run{'s' if k > 1 else ''} of {c}" for c, k in counted)
            )
    parts.append(f"{probes} probe{'s' if probes != 1 else ''}")
    totals = sorted({a + b for a, b in options})
    if totals:
        low, high = totals[0], totals[-1]
        parts.append(f"{low} options" if low == high else f"{low}-{high} options")
    return " × ".join(parts)


def _verdict(
    data: ContrastInput,
    condition: str,
    reference: str,
    n: int,
    difference: float | None,
    interval: Interval | None,
    p_value: float | None,
    unit: str,
    run_test: ReplicateTest | None,
) -> tuple[Verdict, str, str]:
    """(verdict, sentence, explanation): a claim only when the full interval and the tests
    agree (the run-level test too, when this many runs can reach p < ALPHA)."""
    if difference is None or interval is None or n < 2:
        return (
            "too few",
            f"too few probes for a claim: {n} scored under both",
            "the probe bootstrap needs at least 2 probes scored under both conditions",
        )
    estimate = f"{data.number(difference, signed=True)} {data.span(interval)} ({unit})"
    if n < MIN_PROBES_SIGN_FLIP:
        return (
            "too few",
            f"too few probes for a claim: {estimate}",
            f"with {n} probes a sign-flip test cannot reach p < {ALPHA} "
            f"(it needs at least {MIN_PROBES_SIGN_FLIP})",
        )
    excludes_zero = interval.low > 0 or interval.high < 0
    significant = p_value is not None and p_value < ALPHA
    limit = run_test.limit if run_test is not None else ""
    if run_test is not None and run_test.can_reach:
        significant = significant and run_test.p_value < ALPHA
    if excludes_zero and significant:
        direction = "higher" if difference > 0 else "lower"
        sentence = f"{direction} under {condition} than {reference}: {estimate}"
        return (
            direction,
            sentence,
            (f"{limit}: the claim rests on the interval, which includes the runs" if limit else ""),
        )
    resolves = data.number(_half(interval) or 0)
    explanation = f"this contrast resolves differences of about ±{resolves}"
    if excludes_zero != significant:
        explanation += (
            "; the bootstrap interval and the permutation test disagree, so no claim is made"
        )
    if limit:
        explanation += f"; {limit}"
    return "no difference shown", f"no difference shown: {estimate}", explanation


def one_run_note(conditions: Sequence[str]) -> str:
    """Adapter conditions are single training runs: what their intervals leave out."""
    if len(conditions) > 1:
        runs = f"{' and '.join(conditions)} are one training run each (one LoRA adapter)"
    else:
        runs = f"{conditions[0]} is one training run (one LoRA adapter)"
    return (
        f"{runs}: the interval covers the probes and their options, "
        "not the noise between training runs"
    )
