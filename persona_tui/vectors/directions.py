"""A trait's direction per layer from measured activations, and how well it separates.

The persona-vector recipe (Chen et al. 2025): the direction of a trait at a layer is the
difference between the mean activation of responses written under the instruction that
elicits the trait and the mean under the one that suppresses it (each response's
activation the mean over its tokens). A projection is the activation's component along
the unit direction, in the activation's own units.

Which layer to use is read from held-out separation: the questions are split into folds,
the direction is computed without a fold, and that fold's responses are projected on it.
Over all folds this gives, per layer, the AUC (the chance that a held-out positive
response projects higher than a held-out negative one) and the standardized gap (the
difference of the held-out means over their pooled standard deviation). The layer
recommended is the one with the highest AUC, ties broken by the larger gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FOLDS = 4


@dataclass(frozen=True)
class LayerFit:
    """One layer's direction and its held-out separation."""

    layer: int
    norm: float  # the norm of the (unnormalised) direction
    auc: float  # held-out AUC, 0.5 = no separation
    gap: float  # held-out standardized mean difference


def direction(positive: Any, negative: Any) -> Any:
    """Mean of `positive` minus mean of `negative` over their first axis (float64)."""
    import numpy as np

    return np.asarray(positive, dtype=np.float64).mean(axis=0) - np.asarray(
        negative, dtype=np.float64
    ).mean(axis=0)


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(a positive value > a negative one), ties counting one half (Mann-Whitney)."""
    import numpy as np

    pos = np.asarray(positive, dtype=np.float64)[:, None]
    neg = np.asarray(negative, dtype=np.float64)[None, :]
    if not pos.size or not neg.size:
        return float("nan")
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def standardized_gap(positive: Sequence[float], negative: Sequence[float]) -> float:
    """(mean positive - mean negative) / pooled standard deviation (0 when both are flat)."""
    import numpy as np

    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    if pos.size < 2 or neg.size < 2:
        return float("nan")
    pooled = ((pos.size - 1) * pos.var(ddof=1) + (neg.size - 1) * neg.var(ddof=1)) / (
        pos.size + neg.size - 2
    )
    difference = float(pos.mean() - neg.mean())
    return difference / float(np.sqrt(pooled)) if pooled > 0 else 0.0


def fit_layers(
    layers: Sequence[int],
    positive: Any,
    negative: Any,
    positive_groups: Sequence[int],
    negative_groups: Sequence[int],
    folds: int = FOLDS,
) -> tuple[Any, list[LayerFit]]:
    """The directions (len(layers), n_embd) from all responses, and each layer's fit.

    `positive`/`negative` are (responses, len(layers), n_embd) activations; the groups
    name each response's question (0-based), so a fold holds out whole questions.
    """
    import numpy as np

    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    pos_groups = np.asarray(positive_groups)
    neg_groups = np.asarray(negative_groups)
    questions = sorted(set(pos_groups.tolist()) | set(neg_groups.tolist()))
    folds = max(2, min(folds, len(questions)))
    fold_of = {question: index % folds for index, question in enumerate(questions)}
    pos_fold = np.array([fold_of[g] for g in pos_groups.tolist()])
    neg_fold = np.array([fold_of[g] for g in neg_groups.tolist()])
    directions = direction(pos, neg)
    held_pos: list[list[float]] = [[] for _ in layers]
    held_neg: list[list[float]] = [[] for _ in layers]
    for fold in range(folds):
        train = direction(pos[pos_fold != fold], neg[neg_fold != fold])
        norms = np.linalg.norm(train, axis=1, keepdims=True)
        unit = train / np.where(norms > 0, norms, 1.0)
        for k in range(len(layers)):
            held_pos[k].extend((pos[pos_fold == fold, k] @ unit[k]).tolist())
            held_neg[k].extend((neg[neg_fold == fold, k] @ unit[k]).tolist())
    fits = [
        LayerFit(
            layer=int(layer),
            norm=float(np.linalg.norm(directions[k])),
            auc=auc(held_pos[k], held_neg[k]),
            gap=standardized_gap(held_pos[k], held_neg[k]),
        )
        for k, layer in enumerate(layers)
    ]
    return directions, fits


def recommend(fits: Sequence[LayerFit]) -> int:
    """The layer with the highest held-out AUC, ties broken by the larger gap."""

    def key(fit: LayerFit) -> tuple[float, float]:
        auc_value = fit.auc if fit.auc == fit.auc else -1.0  # nan last
        gap_value = fit.gap if fit.gap == fit.gap else -1e9
        return (round(auc_value, 9), gap_value)

    return max(fits, key=key).layer


def project(activations: Any, unit: Any) -> Any:
    """Projections of activations (..., n_embd) on a unit direction (n_embd,)."""
    import numpy as np

    return np.asarray(activations, dtype=np.float64) @ np.asarray(unit, dtype=np.float64)
