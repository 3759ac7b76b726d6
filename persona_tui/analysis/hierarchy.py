"""The hierarchical bootstrap of the likelihood probes: probes, training runs and options.

A likelihood-probe study has three sources of variation, and a contrast's interval should
hold all of them (docs/analysis.md, "Intervals that respect the design"):

- **probes**: another set of questions would give other log-odds; probes are resampled
  with replacement, paired across conditions (every condition asks the same probes);
- **training runs** (replicates): another LoRA run of the same framing moves every probe
  together; each replicated condition's runs are resampled with replacement, independently
  per condition, and shared by every probe of a resample (a run is a whole adapter). A
  condition with one unit (the untouched model, an in-context framing, one training run)
  has no such level;
- **options**: a label's options are a sample of possible wordings; within each drawn probe
  the options of label A and of label B are resampled with replacement, the same draw for
  every arm (every condition and run scores the same option texts: paired).

Each level draws from its own seeded generator, so switching one level off (identity draws)
leaves the others' numbers untouched: with identical runs the interval equals the
probes+options one exactly, with equal options within each label it equals the interval
without the options level, and the probe draws are those of `stats.bootstrap_mean_interval`.
numpy is imported lazily (the `analysis` extra).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from persona_tui._util.deps import require
from persona_tui.analysis.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, Interval

OPTIONS_SEED = 20_240_603
REPLICATES_SEED = 20_240_604
_BLOCK = 2_000  # resamples computed together: bounds memory at block × probes × options
_KEEP_LIMIT = 4_000_000  # per-run log-odds kept per condition up to this many (32 MB)


@dataclass(frozen=True)
class Cell:
    """One arm × probe: the log-probabilities of label A's and label B's options, in an
    order shared by every arm of the probe (the bootstrap draws option positions)."""

    a: tuple[float, ...]
    b: tuple[float, ...]


@dataclass(frozen=True)
class Design:
    """What the bootstrap resamples: each condition's units (its replicate numbers; one
    unit, replicate 0, for a condition that is not replicated) and their cells."""

    units: Mapping[str, tuple[int, ...]]  # condition -> replicate numbers, in order
    cells: Mapping[tuple[str, int, str], Cell]  # (condition, replicate, probe)
    option_counts: Mapping[str, tuple[int, int]]  # probe -> options of A and of B

    def options(self, probe: str) -> tuple[int, int]:
        """How many options of A and of B `probe` has (the same under every arm)."""
        return self.option_counts[probe]


@dataclass(frozen=True)
class Levels:
    """Which levels a bootstrap resamples (probes always do)."""

    replicates: bool = True
    options: bool = True


ALL_LEVELS = Levels()
PROBES_AND_OPTIONS = Levels(replicates=False)
PROBES_AND_REPLICATES = Levels(options=False)
PROBES_ONLY = Levels(replicates=False, options=False)


def hierarchical_interval(
    design: Design,
    conditions: Sequence[str],
    probes: Sequence[str],
    levels: Levels = ALL_LEVELS,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Interval | None:
    """Percentile interval of a condition's mean log-odds (`conditions` = (A,)) or of a
    contrast (A, B): the mean over probes of (mean over A's runs − mean over B's runs).

    None with fewer than 2 probes, where resampling probes says nothing.
    """
    return Resampler(design, probes, levels.options, resamples).interval(
        conditions, levels.replicates, confidence
    )


class Resampler:
    """The bootstrap draws of one probe set (probes, and options when `options` is on),
    and each condition's per-run log-odds under them: computed once per condition and kept
    while small (so every contrast and mean over these probes shares them), else computed
    again block by block."""

    def __init__(
        self,
        design: Design,
        probes: Sequence[str],
        options: bool = True,
        resamples: int = BOOTSTRAP_RESAMPLES,
    ) -> None:
        self.design, self.probes, self.options, self.resamples = design, probes, options, resamples
        n = len(probes)
        if n < 2:
            return
        np = self.np = require("numpy", "the bootstrap")
        self.picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(resamples, n))
        counts = [design.options(p) for p in probes]
        self.k_a = np.array([c[0] for c in counts], dtype=np.int64)
        self.k_b = np.array([c[1] for c in counts], dtype=np.int64)
        options_rng = np.random.default_rng(OPTIONS_SEED)
        self.u_a = options_rng.random((resamples, n, int(self.k_a.max())))
        self.u_b = options_rng.random((resamples, n, int(self.k_b.max())))
        self._kept: dict[str, Any] = {}

    def interval(
        self, conditions: Sequence[str], replicates: bool = True, confidence: float = CONFIDENCE
    ) -> Interval | None:
        """The interval of one condition's mean or of a contrast (A, B), runs resampled
        when `replicates` (and the condition has several)."""
        if len(self.probes) < 2 or not 1 <= len(conditions) <= 2:
            return None
        np = self.np
        draws = {
            c: _replicate_draws(np, self.design, c, self.resamples, replicates) for c in conditions
        }
        stats = []
        for start in range(0, self.resamples, _BLOCK):
            rows = slice(start, min(start + _BLOCK, self.resamples))
            bars = [
                _mean_of_drawn_runs(np, self._per_run(c, rows), draws[c][rows]) for c in conditions
            ]
            statistic = bars[0] - bars[1] if len(bars) == 2 else bars[0]
            stats.append(statistic.mean(axis=1))
        tail = (1 - confidence) / 2 * 100
        low, high = np.percentile(np.concatenate(stats), [tail, 100 - tail])
        return Interval(float(low), float(high))

    def _per_run(self, condition: str, rows: slice) -> Any:
        """(runs, rows, probes): each run's log-odds under the resamples `rows`."""
        kept = self._kept.get(condition)
        if kept is not None:
            return kept[:, rows]
        runs = len(self.design.units[condition])
        if runs * self.resamples * len(self.probes) > _KEEP_LIMIT:
            return self._compute(condition, rows)
        whole = self.np.concatenate(
            [
                self._compute(condition, slice(s, min(s + _BLOCK, self.resamples)))
                for s in range(0, self.resamples, _BLOCK)
            ],
            axis=1,
        )
        self._kept[condition] = whole
        return whole[:, rows]

    def _compute(self, condition: str, rows: slice) -> Any:
        np = self.np
        block = self.picks[rows]
        k_a, k_b = self.k_a[block], self.k_b[block]
        idx_a, mask_a = _option_draws(np, self.u_a[rows], k_a, self.options)
        idx_b, mask_b = _option_draws(np, self.u_b[rows], k_b, self.options)
        va, vb = _values(np, self.design, condition, self.probes)
        return np.stack(
            [
                _lme(np, va[r][block[..., None], idx_a], mask_a, k_a)
                - _lme(np, vb[r][block[..., None], idx_b], mask_b, k_b)
                for r in range(len(va))
            ]
        )


def _values(np: Any, design: Design, condition: str, probes: Sequence[str]) -> tuple[Any, Any]:
    """Per run: (probes × max options) arrays of A's and of B's log-probabilities (padded)."""
    runs = design.units[condition]
    width_a = max(len(design.cells[(condition, runs[0], p)].a) for p in probes)
    width_b = max(len(design.cells[(condition, runs[0], p)].b) for p in probes)
    a = np.zeros((len(runs), len(probes), width_a))
    b = np.zeros((len(runs), len(probes), width_b))
    for r, run in enumerate(runs):
        for j, probe in enumerate(probes):
            cell = design.cells[(condition, run, probe)]
            a[r, j, : len(cell.a)] = cell.a
            b[r, j, : len(cell.b)] = cell.b
    return a, b


def _replicate_draws(np: Any, design: Design, condition: str, resamples: int, on: bool) -> Any:
    """(resamples × runs) run indices: drawn with replacement, or each run once (off)."""
    runs = len(design.units[condition])
    if on and runs > 1:
        # Each condition its own stream, seeded by its id: independent, and unchanged by
        # which other conditions take part.
        seed = [REPLICATES_SEED, zlib.crc32(condition.encode())]
        return np.random.default_rng(seed).integers(0, runs, size=(resamples, runs))
    return np.broadcast_to(np.arange(runs), (resamples, runs))


def _option_draws(np: Any, uniforms: Any, k: Any, on: bool) -> tuple[Any, Any | None]:
    """Option positions for each drawn probe (k of them, with replacement, or each once)
    and the mask of the positions in use (a probe with fewer options than the widest)."""
    width = uniforms.shape[-1]
    positions = np.arange(width)
    # Every probe with the widest number of options: no position is masked out.
    mask = None if bool((k == width).all()) else positions < k[..., None]
    if on:
        drawn = (uniforms * k[..., None]).astype(np.int64)
    else:
        drawn = np.broadcast_to(positions, uniforms.shape)
    return np.minimum(drawn, np.maximum(k[..., None] - 1, 0)), mask


def _lme(np: Any, values: Any, mask: Any, k: Any) -> Any:
    """log-mean-exp over the last axis's masked-in values (k of them; mask None: all)."""
    if mask is None:
        top = values.max(axis=-1)
        shift = np.where(np.isfinite(top), top, 0.0)
        return shift + np.log(np.exp(values - shift[..., None]).sum(axis=-1) / k)
    top = np.where(mask, values, -np.inf).max(axis=-1)
    shift = np.where(np.isfinite(top), top, 0.0)
    total = np.where(mask, np.exp(values - shift[..., None]), 0.0).sum(axis=-1)
    return shift + np.log(total / k)


def _mean_of_drawn_runs(np: Any, per_run: Any, draws: Any) -> Any:
    """Per resample and probe: the mean over the drawn runs, summed in draw order (so that
    identical runs give bitwise the same mean whichever were drawn)."""
    rows = np.arange(per_run.shape[1])
    total = per_run[draws[:, 0], rows]
    for i in range(1, draws.shape[1]):
        total = total + per_run[draws[:, i], rows]
    return total / draws.shape[1]
