"""Train a training study: one LoRA adapter per training condition, on the same completions.

`train_study(scenario, model_path, out_dir, params, on_event, cancel)` is the one entry
point for the CLI (`persona-tui train`) and, later, the app: it tokenizes each condition's
framed examples with the GGUF's tokenizer, loads the GGUF's weights in float32 (cached),
trains each condition in turn (resuming a checkpoint when there is one), and leaves

    out_dir/<condition>/adapter.gguf   the llama.cpp LoRA adapter
    out_dir/<condition>/peft/          the PEFT adapter
    out_dir/<condition>/loss.csv       the loss curve
    out_dir/<condition>/training.toml  the training record
    out_dir/<condition>/checkpoint/    only while unfinished
    out_dir/study.toml                 the scenario, base model and adapters

A condition whose record matches the data and settings is not trained again. Setting
`cancel` stops after the current step with a checkpoint saved (status "interrupted").
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from persona_tui import __version__
from persona_tui._util.hashing import sha256_file
from persona_tui.backends.gguf_file import read_gguf_header
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
from persona_tui.training.convert import write_adapter_gguf
from persona_tui.training.data import ConditionData, tokenize_condition, vocabulary
from persona_tui.training.deps import library_versions, require, require_training
from persona_tui.training.hf import load_float32_model, qk_permuted, weights_cache
from persona_tui.training.lora import TrainOutcome, total_steps, train_lora
from persona_tui.training.mlx_study import train_mlx_study
from persona_tui.training.params import (
    ConditionFinished,
    ConditionResult,
    TrainingEvent,
    TrainingParams,
    TrainingPhase,
)
from persona_tui.training.record import (
    ADAPTER_FILE,
    PEFT_FOLDER,
    TrainingRecord,
    locks_output_folder,
    write_loss_csv,
    write_record,
)


def _ignore(event: TrainingEvent) -> None:
    pass


@locks_output_folder
def train_study(
    scenario: Scenario,
    model_path: Path,
    out_dir: Path,
    params: TrainingParams | None = None,
    on_event: Callable[[TrainingEvent], None] = _ignore,
    cancel: threading.Event | None = None,
    *,
    conditions: Sequence[str] | None = None,
) -> StudyResult:
    """Train the study's adapters (see the module docstring); stops early when cancelled."""
    params = params or TrainingParams()
    if Path(model_path).expanduser().is_dir():  # an MLX model folder: mlx-lm's LoRA
        return train_mlx_study(
            scenario, Path(model_path), out_dir, params, on_event, cancel, conditions=conditions
        )
    require_training()
    training = training_set(scenario)
    chosen = chosen_conditions(scenario, conditions)
    model_path = Path(model_path).expanduser().absolute()
    header = read_gguf_header(model_path)
    on_event(TrainingPhase("", f"hashing {model_path.name}"))
    base_sha256 = sha256_file(model_path)
    on_event(TrainingPhase("", "tokenizing the training examples"))
    with vocabulary(model_path) as vocab:
        datasets = [tokenize_condition(scenario, c, vocab, params.max_tokens) for c in chosen]
    cached = (weights_cache(base_sha256) / "config.json").is_file()
    on_event(
        TrainingPhase(
            "",
            "loading the float32 weights (cached)"
            if cached
            else "converting the GGUF to float32 weights (once per model; cached)",
        )
    )
    started_model: list[Any] = [load_float32_model(model_path, base_sha256)]
    permute = qk_permuted(started_model[0], model_path)
    config = started_model[0].config
    n_head = int(config.num_attention_heads)
    n_head_kv = int(getattr(config, "num_key_value_heads", None) or n_head)

    def load_base() -> Any:
        # The first condition trains the model loaded above; each later one a fresh copy.
        if started_model:
            return started_model.pop()
        return load_float32_model(model_path, base_sha256)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[ConditionResult] = []
    for data in datasets:
        folder = out_dir / data.condition
        fingerprint = condition_fingerprint(base_sha256, data, params, training.seed)
        total = total_steps(len(data.train), params)
        done = already_trained(folder, folder / ADAPTER_FILE, fingerprint, total)
        if done is not None:
            results.append(done)
            on_event(ConditionFinished(done))
            continue
        folder.mkdir(parents=True, exist_ok=True)
        on_event(TrainingPhase(data.condition, "loading the model"))
        outcome = train_lora(
            data, load_base, params, training.seed, folder, fingerprint, on_event, cancel
        )
        write_loss_csv(folder, outcome.rows)
        if not outcome.completed:
            result = condition_result(data, "interrupted", folder, None, outcome, total)
            results.append(result)
            on_event(ConditionFinished(result))
            break
        on_event(TrainingPhase(data.condition, "writing the adapter"))
        adapter = _save_adapter(
            outcome,
            folder,
            header.architecture,
            params,
            permute,
            n_head,
            n_head_kv,
            f"{scenario.id}-{data.condition}",
        )
        record = _record(
            scenario,
            data,
            model_path,
            header.architecture,
            base_sha256,
            params,
            training.seed,
            outcome,
            adapter,
            fingerprint,
            permute,
        )
        write_record(folder, record)
        shutil.rmtree(folder / "checkpoint", ignore_errors=True)
        result = condition_result(data, "complete", folder, adapter, outcome, total)
        results.append(result)
        on_event(ConditionFinished(result))
    base_model = {"path": str(model_path), "sha256": base_sha256}
    return finish_study(out_dir, scenario, base_model, base_sha256, results, "adapter")


def _save_adapter(
    outcome: TrainOutcome,
    folder: Path,
    architecture: str,
    params: TrainingParams,
    permute: bool,
    n_head: int,
    n_head_kv: int,
    name: str,
) -> Path:
    peft = require("peft")
    model = outcome.model
    model.save_pretrained(folder / PEFT_FOLDER)
    state = peft.get_peft_model_state_dict(model)
    return write_adapter_gguf(
        folder / ADAPTER_FILE,
        state,
        architecture=architecture,
        alpha=params.alpha,
        permute_qk=permute,
        n_head=n_head,
        n_head_kv=n_head_kv,
        name=name,
    )


def _record(
    scenario: Scenario,
    data: ConditionData,
    model_path: Path,
    architecture: str,
    base_sha256: str,
    params: TrainingParams,
    seed: int,
    outcome: TrainOutcome,
    adapter: Path,
    fingerprint: str,
    permute: bool,
) -> TrainingRecord:
    torch = require("torch")
    return TrainingRecord(
        **record_fields(scenario, data, fingerprint, outcome),
        base_model={
            "path": str(model_path),
            "sha256": base_sha256,
            "architecture": architecture,
            "size_bytes": model_path.stat().st_size,
        },
        hyperparameters={
            **hyperparameter_fields(params, seed),
            "checkpoint_every": params.checkpoint_every,
            "loss": "mean cross-entropy over completion tokens",
        },
        adapter={
            "file": ADAPTER_FILE,
            "sha256": hashlib.sha256(adapter.read_bytes()).hexdigest(),
            "peft": PEFT_FOLDER,
            "qk_rows_permuted": permute,
        },
        libraries={**library_versions(), "persona-tui": __version__},
        machine={
            "platform": platform.platform(),
            "machine": platform.machine(),
            "torch_threads": int(torch.get_num_threads()),
            "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        },
    )
