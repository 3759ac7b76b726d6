"""Statistical building blocks: intervals, the framing-contrast tests, and rater agreement.

Library code does the statistics wherever a well-kept implementation exists: scipy for
Wilson intervals (`binomtest(...).proportion_ci`), t intervals and Fisher's exact test,
the `krippendorff` package for Krippendorff's alpha. What is computed here is the cluster
bootstrap (scipy's `bootstrap` cannot resample clusters) and Cohen's kappa (a two-line
formula; scikit-learn would be a heavy dependency for it), both checked against textbook
values in tests/unit/test_stats.py, and the probe bootstrap of a mean and the sign-flip
permutation test of the likelihood probes (seeded numpy draws, checked against scipy's
`bootstrap` and `permutation_test` in tests/unit/test_options_analysis.py). The thresholds
every verdict uses (`ALPHA`, `MIN_PROBES`, `MIN_PROBES_SIGN_FLIP`) are defined here once.
scipy, numpy and krippendorff are imported lazily: they come with the `analysis` extra.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from persona_tui._util.deps import require

Item = TypeVar("Item", bound=Hashable)

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20_240_601  # fixed, so a report is reproducible
EXACT_LIMIT = 100_000  # sign-flip: enumerate every sign pattern when 2^n is at most this
RANDOM_FLIPS = 100_000  # else this many seeded random sign patterns
PERMUTATION_SEED = 20_240_602
_TIE = 1e-12  # relative tolerance when comparing permuted statistics with the observed one

# Below these, a contrast makes no claim (see docs/analysis.md).
ALPHA = 0.05  # a difference is claimed only when p < ALPHA (and the interval excludes 0)
MIN_PROBES = 5  # probes under both conditions for the probe bootstrap of a label rate
# With n probes the smallest two-sided sign-flip p is 2 / 2^n: below 6 probes, never < 0.05.
MIN_PROBES_SIGN_FLIP = 6


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> Interval | None:
    """The Wilson score interval of a proportion k/n (None when n == 0)."""
    if n <= 0:
        return None
    stats = require("scipy.stats", "Wilson intervals")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(float(ci.low), float(ci.high))


@dataclass(frozen=True)
class MeanEstimate:
    n: int
    mean: float | None
    interval: Interval | None  # t interval; None with fewer than 2 values or no spread


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> MeanEstimate:
    """Mean with a Student t interval (the values are treated as independent)."""
    n = len(values)
    if n == 0:
        return MeanEstimate(0, None, None)
    mean = math.fsum(values) / n
    if n < 2:
        return MeanEstimate(n, mean, None)
    stats = require("scipy.stats", "confidence intervals of means")
    sem = float(stats.sem(values))
    if sem == 0 or math.isnan(sem):
        return MeanEstimate(n, mean, Interval(mean, mean))
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return MeanEstimate(n, mean, Interval(float(low), float(high)))


def fisher_exact_p(k_a: int, n_a: int, k_b: int, n_b: int) -> float | None:
    """Two-sided Fisher exact test of k_a/n_a vs k_b/n_b (None when a group is empty)."""
    if n_a <= 0 or n_b <= 0:
        return None
    stats = require("scipy.stats", "the exact test")
    result = stats.fisher_exact([[k_a, n_a - k_a], [k_b, n_b - k_b]], alternative="two-sided")
    return float(result.pvalue)


@dataclass(frozen=True)
class ClusterCounts:
    """Per cluster (probe): events and trials under the tested and the reference condition."""

    k: Sequence[int]
    n: Sequence[int]
    k_ref: Sequence[int]
    n_ref: Sequence[int]


def cluster_bootstrap_difference(
    counts: ClusterCounts,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> Interval | None:
    """Percentile bootstrap interval of rate − rate_ref, resampling whole clusters.

    Trials of one probe are correlated (same question), so probes are drawn with
    replacement and each draw keeps all of that probe's trials under both conditions (the
    design is paired: every condition asks the same probes). Returns None with fewer than
    2 clusters, where resampling clusters says nothing.
    """
    np = require("numpy", "the bootstrap")
    k = np.asarray(counts.k, dtype=np.int64)
    n = np.asarray(counts.n, dtype=np.int64)
    k_ref = np.asarray(counts.k_ref, dtype=np.int64)
    n_ref = np.asarray(counts.n_ref, dtype=np.int64)
    clusters = len(k)
    if clusters < 2:
        return None
    rng = np.random.default_rng(seed)
    # Each resample as counts of how often each cluster was drawn (multinomial draw):
    # memory is resamples × clusters, whatever the number of trials.
    weights = rng.multinomial(clusters, np.full(clusters, 1.0 / clusters), size=resamples)
    n_sum = weights @ n
    n_ref_sum = weights @ n_ref
    valid = (n_sum > 0) & (n_ref_sum > 0)
    if not valid.any():
        return None
    diff = (weights @ k)[valid] / n_sum[valid] - (weights @ k_ref)[valid] / n_ref_sum[valid]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diff, [tail, 100 - tail])
    return Interval(float(low), float(high))


def bootstrap_mean_interval(
    values: Sequence[float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> Interval | None:
    """Percentile bootstrap interval of the mean, resampling the values (probes).

    None with fewer than 2 values, where resampling says nothing.
    """
    if len(values) < 2:
        return None
    np = require("numpy", "the bootstrap")
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(data), size=(resamples, len(data)))
    means = data[picks].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(low), float(high))


def sign_flip_p(
    differences: Sequence[float],
    flips: int = RANDOM_FLIPS,
    exact_limit: int = EXACT_LIMIT,
    seed: int = PERMUTATION_SEED,
) -> tuple[float, bool] | None:
    """Two-sided sign-flip permutation p of the mean of paired differences, and if exact.

    Under the null (the framing changes nothing) each probe's difference is as likely
    positive as negative. Exact (every one of the 2^n sign patterns) when 2^n ≤
    `exact_limit`; else `flips` seeded random patterns with p = (hits + 1) / (flips + 1).
    None for no differences.
    """
    n = len(differences)
    if n == 0:
        return None
    np = require("numpy", "the permutation test")
    data = np.asarray(differences, dtype=np.float64)
    observed = abs(float(data.mean()))
    threshold = observed - _TIE * max(1.0, observed)
    if 2**n <= exact_limit:
        patterns = np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)
        signs = 1.0 - 2.0 * (patterns & 1)
        hits = int(np.count_nonzero(np.abs(signs @ data) / n >= threshold))
        return hits / 2**n, True
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, flips, 10_000):  # in blocks: memory stays at 10,000 × n
        size = min(10_000, flips - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(size, n))
        hits += int(np.count_nonzero(np.abs(signs @ data) / n >= threshold))
    return (hits + 1) / (flips + 1), False


@dataclass(frozen=True)
class KappaResult:
    items: int
    observed: float  # observed agreement
    expected: float  # agreement expected by chance
    kappa: float | None  # None when undefined (both raters used one same category only)


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> KappaResult | None:
    """Cohen's kappa of two raters' nominal ratings, given as (rater A, rater B) pairs.

    kappa = (p_o − p_e) / (1 − p_e), with p_e from each rater's own category frequencies.
    """
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    count_a = Counter(a for a, _ in pairs)
    count_b = Counter(b for _, b in pairs)
    expected = sum(count_a[c] * count_b.get(c, 0) for c in count_a) / (n * n)
    if math.isclose(expected, 1.0):
        return KappaResult(n, observed, expected, None)
    return KappaResult(n, observed, expected, (observed - expected) / (1 - expected))


@dataclass(frozen=True)
class AlphaResult:
    raters: int
    items: int  # items with at least two ratings (the pairable ones)
    alpha: float | None


def krippendorff_alpha(ratings: Mapping[Item, Mapping[str, Hashable]]) -> AlphaResult:
    """Krippendorff's alpha (nominal) of ratings given as item → rater → category.

    Missing ratings are allowed; items with fewer than two ratings do not count.
    """
    np = require("numpy", "Krippendorff's alpha")
    kd = require("krippendorff", "Krippendorff's alpha")
    raters = sorted({r for by_rater in ratings.values() for r in by_rater})
    items = [i for i, by_rater in ratings.items() if len(by_rater) >= 2]
    categories = sorted({str(c) for i in items for c in ratings[i].values()})
    if len(raters) < 2 or not items:
        return AlphaResult(len(raters), len(items), None)
    if len(categories) < 2:
        # Everyone always chose one category: there is no variation to agree on.
        return AlphaResult(len(raters), len(items), None)
    code = {c: float(index) for index, c in enumerate(categories)}
    data = np.full((len(raters), len(items)), np.nan)
    row = {r: index for index, r in enumerate(raters)}
    for column, item in enumerate(items):
        for rater, category in ratings[item].items():
            data[row[rater], column] = code[str(category)]
    alpha = float(kd.alpha(reliability_data=data, level_of_measurement="nominal"))
    return AlphaResult(len(raters), len(items), None if math.isnan(alpha) else alpha)
