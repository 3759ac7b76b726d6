"""What the torch and MLX training paths share: which conditions to train, the replicates of
each (their seeds and folders), a run's fingerprint (what a finished adapter or a checkpoint
must match), a run's result and the record fields every trainer writes, and the study's
result and study.toml.

A study trains each condition `replicates` times (`[training] replicates`, `--replicates`):
replicate k (1-based) differs from the others only in its training seed,
`replicate_seed(study_seed, k)` (LoRA initialisation and example order; the held-out split
keeps the study seed), and lives in its own folder, `replicate_folder(out_dir, condition, k)`
= `OUT/<condition>/replicate-<k>/`, the one layout whatever the number of replicates.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_tui._util.tables import did_you_mean
from persona_tui.backends.adapter_files import adapter_weights
from persona_tui.errors import TrainingError
from persona_tui.run.adapters import replicate_folder as condition_replicate_folder
from persona_tui.scenario.model import Condition, Scenario, TrainingSet
from persona_tui.training.data import ConditionData
from persona_tui.training.loop import TrainOutcome
from persona_tui.training.params import ConditionResult, ConditionStatus, TrainingParams
from persona_tui.training.record import read_record, write_study


def replicate_seed(study_seed: int, k: int) -> int:
    """The training seed of replicate `k` (1-based): replicate 1 trains with the study's
    seed (exactly a one-run study), each next one with the next integer."""
    if k < 1:
        raise ValueError(f"replicates are numbered from 1, got {k}")
    return study_seed + k - 1


def replicate_folder(out_dir: Path, condition: str, k: int) -> Path:
    """Where replicate `k` of `condition` leaves its adapter, record and loss curve:
    `out_dir/<condition>/replicate-<k>` (the one rule, run/adapters.py's, where runs find
    them)."""
    return condition_replicate_folder(Path(out_dir) / condition, k)


@dataclass(frozen=True)
class Replicate:
    """One training run of a condition: replicate `index` of `of`, trained with `seed`."""

    index: int
    of: int
    seed: int

    def fields(self) -> dict[str, int]:
        """A training record's `[replicate]`."""
        return {"index": self.index, "of": self.of, "seed": self.seed}


def replicates_of(study_seed: int, n: int) -> list[Replicate]:
    """The `n` replicates of a condition, in the order they are trained."""
    return [Replicate(k, n, replicate_seed(study_seed, k)) for k in range(1, n + 1)]


@dataclass(frozen=True)
class StudyResult:
    folder: Path
    base_sha256: str
    results: tuple[ConditionResult, ...]  # one per (condition, replicate) reached
    base_conditions: tuple[str, ...]  # the conditions probed on the untouched base model
    replicates: int = 1

    @property
    def complete(self) -> bool:
        return all(r.status != "interrupted" for r in self.results)


def training_set(scenario: Scenario) -> TrainingSet:
    """The study's `[training]` table; TrainingError when the scenario is no training study."""
    if scenario.training is None:
        raise TrainingError(
            f"scenario {scenario.id!r} is not a training study: it has no [training] table "
            "(see docs/scenario-format.md, Training)"
        )
    return scenario.training


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
    """What a run's adapter and checkpoint must match; `seed` is its replicate's seed."""
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


def condition_result(
    data: ConditionData,
    replicate: Replicate,
    status: ConditionStatus,
    folder: Path,
    adapter: Path | None,
    outcome: TrainOutcome,
    total: int,
) -> ConditionResult:
    """What a replicate's training (complete or interrupted) left in its folder."""
    return ConditionResult(
        data.condition,
        status,
        folder,
        adapter,
        outcome.steps,
        total,
        outcome.train_loss,
        outcome.heldout_loss,
        outcome.seconds,
        replicate.index,
        replicate.of,
    )


def already_trained(
    condition: str, replicate: Replicate, folder: Path, adapter: Path, fingerprint: str, total: int
) -> ConditionResult | None:
    """The replicate in `folder` when its adapter (a GGUF file or an mlx-lm folder, where
    the trainer leaves it) was finished for exactly this fingerprint; None otherwise."""
    record = read_record(folder)
    if record is None or not adapter_weights(adapter).is_file():
        return None
    result = record.get("result", {})
    if record.get("data", {}).get("fingerprint") != fingerprint or result.get("steps") != total:
        return None
    return ConditionResult(
        condition,
        "already-trained",
        folder,
        adapter,
        total,
        total,
        result.get("train_loss"),
        result.get("heldout_loss"),
        float(result.get("seconds", 0)),
        replicate.index,
        replicate.of,
    )


def record_fields(
    scenario: Scenario,
    data: ConditionData,
    fingerprint: str,
    outcome: TrainOutcome,
    replicate: Replicate,
    trained_tokens: int,
) -> dict[str, dict[str, Any]]:
    """A training record's `[scenario]`, `[condition]`, `[replicate]`, `[data]` and
    `[result]`: the same for every trainer (each adds its base model, hyperparameters,
    adapter and machine). `trained_tokens`: the tokens its steps trained on (prompt and
    completion; what `estimate` divides the seconds by)."""
    condition = scenario.condition(data.condition)
    framing = condition.training
    return {
        "scenario": {"id": scenario.id, "sha256": scenario.sha256, "path": scenario.source_path},
        "condition": {
            "id": condition.id,
            "label": condition.label,
            "system": framing.system if framing else "",
            "user": framing.user if framing else "",
            "prompt_mode": data.mode,
        },
        "replicate": replicate.fields(),
        "data": data_fields(data, fingerprint, scenario.training),
        "result": {
            "steps": outcome.steps,
            "trained_tokens": trained_tokens,
            "train_loss": outcome.train_loss,
            "heldout_loss": outcome.heldout_loss,
            "seconds": round(outcome.seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }


def finish_study(
    out_dir: Path,
    scenario: Scenario,
    base_model: Mapping[str, str],
    base_sha256: str,
    results: Sequence[ConditionResult],
    adapter_key: str,
    replicates: int,
) -> StudyResult:
    """Write study.toml (the scenario, the base model, which condition has which adapter,
    under `adapter_key`) and return the study's result."""
    base_ids = tuple(c.id for c in scenario.conditions if c.adapter_condition is None)
    write_study(
        out_dir,
        {
            "scenario": {
                "id": scenario.id,
                "sha256": scenario.sha256,
                "path": scenario.source_path,
            },
            "base_model": dict(base_model),
            "base_conditions": list(base_ids),
            # One [[adapters]] entry per training run: its condition, replicate (1..N) and
            # folder relative to out_dir ("learns/replicate-2").
            "replicates": replicates,
            "adapters": [
                {
                    "condition": r.condition,
                    "replicate": r.replicate,
                    "status": r.status,
                    "folder": r.folder.relative_to(out_dir).as_posix(),
                    adapter_key: None if r.adapter is None else str(r.adapter.relative_to(out_dir)),
                }
                for r in results
            ],
        },
    )
    return StudyResult(out_dir, base_sha256, tuple(results), base_ids, replicates)
