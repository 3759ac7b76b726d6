"""What the torch and MLX training paths share: which conditions to train, a condition's
fingerprint (what a finished adapter or a checkpoint must match), the study's result."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from persona_tui._util.tables import did_you_mean
from persona_tui.errors import TrainingError
from persona_tui.scenario.model import Condition, Scenario, TrainingSet
from persona_tui.training.data import ConditionData
from persona_tui.training.params import ConditionResult, TrainingParams


@dataclass(frozen=True)
class StudyResult:
    folder: Path
    base_sha256: str
    results: tuple[ConditionResult, ...]
    base_conditions: tuple[str, ...]  # the conditions probed on the untouched base model

    @property
    def complete(self) -> bool:
        return all(r.status != "interrupted" for r in self.results)


def chosen_conditions(scenario: Scenario, wanted: Sequence[str] | None) -> list[Condition]:
    trainable = list(scenario.training_conditions)
    if not trainable:
        raise TrainingError(f"scenario {scenario.id!r} has no condition with [conditions.training]")
    if not wanted:
        return trainable
    ids = [c.id for c in trainable]
    for name in wanted:
        if name not in ids:
            hint = did_you_mean(name, ids) or f" training conditions: {', '.join(ids)}"
            raise TrainingError(f"--conditions: {name!r} is not a training condition;{hint}")
    return [c for c in trainable if c.id in wanted]


def condition_fingerprint(
    base_sha256: str, data: ConditionData, params: TrainingParams, seed: int
) -> str:
    payload = {
        "base_sha256": base_sha256,
        "data_sha256": data.sha256,
        "seed": seed,
        **params.fingerprint_fields(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def data_fields(
    data: ConditionData, fingerprint: str, training: TrainingSet | None
) -> dict[str, object]:
    """A training record's `[data]`: what was trained on (the same for every trainer)."""
    return {
        "sha256": data.sha256,
        "fingerprint": fingerprint,
        "examples_path": training.examples_path if training else "",
        "examples_sha256": training.examples_sha256 if training else "",
        "train_examples": len(data.train),
        "heldout_examples": len(data.heldout),
        "train_tokens": data.train_tokens,
        "completion_tokens": sum(len(e.completion) for e in data.train),
    }


def hyperparameter_fields(params: TrainingParams, seed: int) -> dict[str, object]:
    """A training record's `[hyperparameters]` that every trainer shares (each adds its own)."""
    return {
        "epochs": params.epochs,
        "max_steps": params.max_steps,
        "rank": params.rank,
        "alpha": params.alpha,
        "lr": params.lr,
        "schedule": "constant",
        "optimizer": "AdamW (weight_decay 0)",
        "batch_size": params.batch_size,
        "dropout": 0.0,
        "seed": seed,
        "targets": list(params.targets),
    }
