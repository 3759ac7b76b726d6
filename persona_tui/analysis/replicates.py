"""Training runs as units: the spread between replicates and the replicate-level tests.

In a replicated training study each framing is trained N times (replicates differ only in
their training seed). Each run's **mean log-odds over the probes** is one unit here:

- `spread`: how far a condition's runs (or a contrast's run-level differences) lie apart,
  as an SD and a range, so a reader sees whether training noise or probe noise dominates;
- `replicate_test`: a permutation test whose unit is the training run. Two conditions that
  both have training noise (two replicated framings, or one against a single trained run):
  an exact permutation of the run labels (every split of the pooled runs, C(n_A + n_B,
  n_A) of them); a replicated condition against a fixed reference (the untouched model, an
  in-context framing): a sign flip of the run-level differences (2^N patterns). Few runs
  cannot reach p < 0.05 (3 vs 3: 20 splits, smallest two-sided p 0.1; 3 against the base:
  8 patterns, smallest p 0.25): `ReplicateTest.smallest_p` and `limit` say so.
numpy is imported lazily (the `analysis` extra).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from persona_tui._util.deps import require
from persona_tui.analysis.stats import (
    ALPHA,
    EXACT_LIMIT,
    PERMUTATION_SEED,
    RANDOM_FLIPS,
    sign_flip_p,
)

_TIE = 1e-12


@dataclass(frozen=True)
class Spread:
    """Run-level values (means over probes, or differences of them): count, SD, range."""

    units: int
    sd: float | None  # sample SD (n − 1); None with one unit
    low: float
    high: float


def spread(values: Sequence[float]) -> Spread | None:
    """The SD and range of `values`; None for none."""
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else None
    return Spread(len(values), sd, min(values), max(values))


@dataclass(frozen=True)
class ReplicateTest:
    """A permutation test at the level of training runs."""

    method: str  # "run-label permutation" or "run-level sign flip"
    runs: tuple[int, int]  # units of the condition and of the reference
    p_value: float
    exact: bool  # every split / sign pattern (True) or RANDOM_FLIPS random ones
    smallest_p: float  # the smallest p this many runs can give

    @property
    def can_reach(self) -> bool:
        """Whether this many runs can give p < ALPHA at all."""
        return self.smallest_p < ALPHA

    @property
    def limit(self) -> str:
        """Why the test cannot reach p < ALPHA ("" when it can)."""
        if self.can_reach:
            return ""
        a, b = self.runs
        if self.method == "run-level sign flip":
            patterns = f"{2 ** max(a, b)} sign patterns"
            design = f"{max(a, b)} training runs against a condition without training"
        else:
            patterns = f"{math.comb(a + b, a)} splits"
            design = f"{a} vs {b} training runs"
        return (
            f"with {design} a permutation test of the runs cannot reach p < {ALPHA} "
            f"({patterns}: the smallest p is {self.smallest_p:.3g})"
        )


def replicate_test(
    units: Sequence[float], reference_units: Sequence[float], fixed: tuple[bool, bool]
) -> ReplicateTest | None:
    """The run-level test of `units` (one condition's runs) against the reference's.

    `fixed[i]`: that side has no training noise (the untouched model or an in-context
    framing: one unit), so the other side's runs are tested by a sign flip of their
    differences to it. Otherwise the run labels are permuted. None when neither side has
    two runs (there is no run-level test).
    """
    a, b = list(units), list(reference_units)
    if not a or not b or (len(a) < 2 and len(b) < 2):
        return None
    if fixed[1] and len(b) == 1:
        return _sign_flip([x - b[0] for x in a], (len(a), 1))
    if fixed[0] and len(a) == 1:
        return _sign_flip([a[0] - y for y in b], (1, len(b)))
    return label_permutation_p(a, b)


def _sign_flip(differences: list[float], runs: tuple[int, int]) -> ReplicateTest | None:
    found = sign_flip_p(differences)
    if found is None:
        return None
    n = len(differences)
    return ReplicateTest("run-level sign flip", runs, found[0], found[1], min(1.0, 2 / 2**n))


def label_permutation_p(
    units: Sequence[float],
    reference_units: Sequence[float],
    permutations: int = RANDOM_FLIPS,
    exact_limit: int = EXACT_LIMIT,
    seed: int = PERMUTATION_SEED,
) -> ReplicateTest:
    """Two-sided permutation p of |mean(units) − mean(reference_units)|, permuting labels.

    Exact (every split of the pooled units into groups of the two sizes) when there are at
    most `exact_limit` splits; else `permutations` seeded random splits, p = (hits + 1) /
    (permutations + 1).
    """
    np = require("numpy", "the permutation test")
    pooled = np.asarray([*units, *reference_units], dtype=np.float64)
    n, k = len(pooled), len(units)
    total = pooled.sum()
    observed = abs(float(np.mean(units) - np.mean(reference_units)))
    threshold = observed - _TIE * max(1.0, observed)
    splits = math.comb(n, k)
    smallest = (2 if 2 * k == n else 1) / splits

    def hits_of(chosen: object) -> int:
        group = pooled[chosen].sum(axis=1)
        stat = np.abs(group / k - (total - group) / (n - k))
        return int(np.count_nonzero(stat >= threshold))

    if splits <= exact_limit:
        chosen = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64)
        p = hits_of(chosen) / splits
        return ReplicateTest("run-label permutation", (k, n - k), p, True, smallest)
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, permutations, 10_000):
        size = min(10_000, permutations - start)
        chosen = np.argsort(rng.random((size, n)), axis=1)[:, :k]
        hits += hits_of(chosen)
    p = (hits + 1) / (permutations + 1)
    return ReplicateTest("run-label permutation", (k, n - k), p, False, smallest)
