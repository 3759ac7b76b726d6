"""A training study on an MLX model folder: one mlx-lm LoRA adapter per training condition.

`train_study` comes here when the model is a folder. The examples are tokenized by the
folder's own tokenizer (the MLX backend, as a probe's prompt is), each condition trains on
a fresh copy of the weights (training/mlx_lora.py), and each condition folder gets

    out_dir/<condition>/mlx/adapters.safetensors + adapter_config.json   (mlx-lm's adapter)
    out_dir/<condition>/loss.csv, training.toml

and out_dir/study.toml as on the torch path. There is no llama.cpp adapter GGUF here: the
MLX backend probes the `mlx` folder (`MlxBackend.use_adapter`, training/adapters.py).
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from persona_tui import __version__
from persona_tui.backend_names import MLX
from persona_tui.backends.adapter_files import MLX_ADAPTER
from persona_tui.backends.common import hub_offline
from persona_tui.backends.detect import check_mlx_folder
from persona_tui.backends.registry import load_engine
from persona_tui.errors import ModelLoadError, TrainingError
from persona_tui.scenario.model import Scenario
from persona_tui.training.conditions import (
    StudyResult,
    already_trained,
    chosen_conditions,
    condition_fingerprint,
    condition_result,
    finish_study,
    hyperparameter_fields,
    record_fields,
    training_set,
)
from persona_tui.training.data import ConditionData, ModelTokenizer, tokenize_condition
from persona_tui.training.deps import library_versions
from persona_tui.training.lora import total_steps
from persona_tui.training.mlx_lora import MLX_ADAPTER_FILE, MlxTrainOutcome, train_mlx_lora
from persona_tui.training.params import (
    ConditionFinished,
    ConditionResult,
    ConditionStatus,
    TrainingEvent,
    TrainingParams,
    TrainingPhase,
)
from persona_tui.training.record import (
    TrainingRecord,
    locks_output_folder,
    write_loss_csv,
    write_record,
)

MLX_FOLDER = MLX_ADAPTER.folder  # "mlx": what the MLX backend's use_adapter takes


def load_mlx_model(folder: Path) -> Any:
    """The folder's mlx-lm model, never downloading anything."""
    try:
        import mlx_lm
    except ImportError as error:
        raise TrainingError(
            f"training on an MLX folder needs mlx and mlx-lm ({error}): "
            "pip install 'persona-tui[mlx]'"
        ) from error
    with hub_offline():
        return mlx_lm.load(str(folder))[0]


@locks_output_folder
def train_mlx_study(
    scenario: Scenario,
    model_path: Path,
    out_dir: Path,
    params: TrainingParams,
    on_event: Callable[[TrainingEvent], None],
    cancel: threading.Event | None = None,
    *,
    conditions: Sequence[str] | None = None,
) -> StudyResult:
    """Train the study's adapters with MLX (see the module docstring)."""
    training = training_set(scenario)
    chosen = chosen_conditions(scenario, conditions)
    folder = Path(model_path).expanduser().absolute()
    try:
        check_mlx_folder(folder)
        on_event(TrainingPhase("", f"loading {folder.name} and tokenizing the examples"))
        backend = cast(ModelTokenizer, load_engine(MLX, folder, {}).backend)
    except ModelLoadError as error:
        raise TrainingError(str(error)) from error
    try:
        base_sha256 = backend.info.sha256
        datasets = [tokenize_condition(scenario, c, backend, params.max_tokens) for c in chosen]
        mlx_version = backend.info.extra.get("mlx_version", "")
    finally:
        backend.close()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[ConditionResult] = []
    for data in datasets:
        condition_folder = out_dir / data.condition
        condition_folder.mkdir(parents=True, exist_ok=True)
        fingerprint = condition_fingerprint(base_sha256, data, params, training.seed)
        total = total_steps(len(data.train), params)
        done = already_trained(condition_folder, condition_folder / MLX_FOLDER, fingerprint, total)
        if done is not None:
            results.append(done)
            on_event(ConditionFinished(done))
            continue
        on_event(TrainingPhase(data.condition, "loading the model"))
        outcome = train_mlx_lora(
            data,
            load_mlx_model(folder),
            params,
            training.seed,
            condition_folder / MLX_FOLDER,
            on_event,
            cancel,
            checkpoint=condition_folder / "checkpoint",
            fingerprint=fingerprint,
        )
        write_loss_csv(condition_folder, outcome.rows)
        adapter = condition_folder / MLX_FOLDER if outcome.completed else None
        if adapter is not None:
            write_record(
                condition_folder,
                _record(
                    scenario,
                    data,
                    folder,
                    base_sha256,
                    params,
                    training.seed,
                    outcome,
                    adapter,
                    fingerprint,
                    mlx_version,
                ),
            )
            shutil.rmtree(condition_folder / "checkpoint", ignore_errors=True)
        status: ConditionStatus = "complete" if outcome.completed else "interrupted"
        result = condition_result(data, status, condition_folder, adapter, outcome, total)
        results.append(result)
        on_event(ConditionFinished(result))
        if not outcome.completed:
            break
    base_model = {"path": str(folder), "sha256": base_sha256, "backend": "mlx"}
    return finish_study(out_dir, scenario, base_model, base_sha256, results, "mlx_adapter")


def _record(
    scenario: Scenario,
    data: ConditionData,
    folder: Path,
    base_sha256: str,
    params: TrainingParams,
    seed: int,
    outcome: MlxTrainOutcome,
    adapter: Path,
    fingerprint: str,
    mlx_version: str,
) -> TrainingRecord:
    weights = adapter / MLX_ADAPTER_FILE
    return TrainingRecord(
        **record_fields(scenario, data, fingerprint, outcome),
        base_model={"path": str(folder), "sha256": base_sha256, "backend": "mlx"},
        hyperparameters={
            **hyperparameter_fields(params, seed),
            "loss": "mean cross-entropy over completion tokens",
            "trainer": "mlx-lm LoRA layers (training/mlx_lora.py)",
        },
        adapter={
            "format": "mlx-lm",
            "folder": str(adapter.relative_to(adapter.parent)),
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        },
        libraries={
            **library_versions(),
            "mlx": mlx_version,
            "mlx-lm": _version("mlx-lm"),
            "persona-tui": __version__,
        },
        machine={"platform": platform.platform(), "machine": platform.machine()},
    )


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"
