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

    def options(self, condition: str, probe: str) -> tuple[int, int]:
        """How many options of A and of B `probe` has (the same under every arm)."""
        cell = self.cells[(condition, self.units[condition][0], probe)]
        return len(cell.a), len(cell.b)


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
    n = len(probes)
    if n < 2 or not 1 <= len(conditions) <= 2:
        return None
    np = require("numpy", "the bootstrap")
    picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(resamples, n))
    counts = [design.options(conditions[0], p) for p in probes]
    k_a = np.array([c[0] for c in counts], dtype=np.int64)
    k_b = np.array([c[1] for c in counts], dtype=np.int64)
    options_rng = np.random.default_rng(OPTIONS_SEED)
    u_a = options_rng.random((resamples, n, int(k_a.max())))
    u_b = options_rng.random((resamples, n, int(k_b.max())))
    draws = {c: _replicate_draws(np, design, c, resamples, levels.replicates) for c in conditions}
    values = {c: _values(np, design, c, probes) for c in conditions}
    stats = []
    for start in range(0, resamples, _BLOCK):
        rows = slice(start, min(start + _BLOCK, resamples))
        block = picks[rows]
        idx_a, mask_a = _option_draws(np, u_a[rows], k_a[block], levels.options)
        idx_b, mask_b = _option_draws(np, u_b[rows], k_b[block], levels.options)
        bars = []
        for c in conditions:
            va, vb = values[c]
            per_run = np.stack(
                [
                    _lme(np, va[r][block[..., None], idx_a], mask_a, k_a[block])
                    - _lme(np, vb[r][block[..., None], idx_b], mask_b, k_b[block])
                    for r in range(len(va))
                ]
            )  # (runs, block, probes)
            bars.append(_mean_of_drawn_runs(np, per_run, draws[c][rows]))
        statistic = bars[0] - bars[1] if len(bars) == 2 else bars[0]
        stats.append(statistic.mean(axis=1))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(stats), [tail, 100 - tail])
    return Interval(float(low), float(high))


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


def _option_draws(np: Any, uniforms: Any, k: Any, on: bool) -> tuple[Any, Any]:
    """Option positions for each drawn probe (k of them, with replacement, or each once)
    and the mask of the positions in use (a probe with fewer options than the widest)."""
    width = uniforms.shape[-1]
    positions = np.arange(width)
    mask = positions < k[..., None]
    if on:
        drawn = (uniforms * k[..., None]).astype(np.int64)
    else:
        drawn = np.broadcast_to(positions, uniforms.shape)
    return np.minimum(drawn, np.maximum(k[..., None] - 1, 0)), mask


def _lme(np: Any, values: Any, mask: Any, k: Any) -> Any:
    """log-mean-exp over the last axis's masked-in values (k of them)."""
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
