"""A training study's torch + peft engine: LoRA on a GGUF's float32 weights (the study loop,
training/study.py, calls it).

`open_torch_study` hashes the GGUF, tokenizes the chosen conditions with its own vocabulary
(llama.cpp, `vocab_only`) and loads its weights in float32 (converted once, cached:
training/hf.py). Each run (a condition's replicate) trains a fresh copy of them
(training/lora.py) with its replicate's seed and leaves

    <condition>/replicate-<k>/adapter.gguf   the llama.cpp LoRA adapter (training/convert.py)
    <condition>/replicate-<k>/peft/          the PEFT adapter

and a training record naming torch's threads and CPU capability, and the numeric precision
it trained in (`[hyperparameters] precision`, `[adapter] trained_precision`: "fp32", or
"bf16" autocast of the matrix products; `[machine] cpu_bf16_units`).
"""

from __future__ import annotations

import hashlib
import platform
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from persona_tui import __version__
from persona_tui._util.hashing import sha256_file
from persona_tui.backends.gguf_file import read_gguf_header
from persona_tui.scenario.model import Condition, Scenario
from persona_tui.training.conditions import Replicate, hyperparameter_fields, record_fields
from persona_tui.training.convert import write_adapter_gguf
from persona_tui.training.data import ConditionData, tokenize_condition, vocabulary
from persona_tui.training.deps import library_versions, require
from persona_tui.training.hf import load_float32_model, qk_permuted, weights_cache
from persona_tui.training.loop import LossRow, TrainOutcome, run_tokens
from persona_tui.training.lora import train_lora
from persona_tui.training.params import TrainingEvent, TrainingParams, TrainingPhase
from persona_tui.training.record import ADAPTER_FILE, PEFT_FOLDER, TrainingRecord, write_record
from persona_tui.training.torch_compute import bf16_units, resolve_precision

PRECISION_DETAIL = {
    "fp32": "float32 throughout",
    "bf16": "bfloat16 autocast of the matrix products (the frozen weights rounded to "
    "bfloat16 once, as autocast would); float32 LoRA matrices, optimizer state, embeddings, "
    "norms and loss",
}


def torch_precision(params: TrainingParams) -> TrainingParams:
    """`params` with "auto" precision resolved for this CPU (training/torch_compute.py):
    what a condition is fingerprinted and trained with."""
    return replace(params, precision=resolve_precision(require("torch"), params.precision))


def open_torch_study(
    scenario: Scenario,
    model_path: Path,
    chosen: Sequence[Condition],
    params: TrainingParams,
    on_event: Callable[[TrainingEvent], None],
) -> TorchStudy:
    """The GGUF's study engine, its conditions tokenized and its float32 weights loaded
    (the train extra must be importable: `deps.require_training`)."""
    model_path = Path(model_path).expanduser().absolute()
    header = read_gguf_header(model_path)
    on_event(TrainingPhase("", f"hashing {model_path.name}"))
    base_sha256 = sha256_file(model_path)
    on_event(TrainingPhase("", "tokenizing the training examples"))
    datasets = _tokenize(scenario, chosen, model_path, params.max_tokens)
    cached = (weights_cache(base_sha256) / "config.json").is_file()
    on_event(
        TrainingPhase(
            "",
            "loading the float32 weights (cached)"
            if cached
            else "converting the GGUF to float32 weights (once per model; cached)",
        )
    )
    model = load_float32_model(model_path, base_sha256)
    config = model.config
    n_head = int(config.num_attention_heads)
    return TorchStudy(
        scenario=scenario,
        model_path=model_path,
        architecture=header.architecture,
        base_sha256=base_sha256,
        datasets=datasets,
        params=params,
        permute=qk_permuted(model, model_path),
        n_head=n_head,
        n_head_kv=int(getattr(config, "num_key_value_heads", None) or n_head),
        unused_model=[model],
    )


def _tokenize(
    scenario: Scenario, chosen: Sequence[Condition], model_path: Path, max_tokens: int
) -> list[ConditionData]:
    """The conditions' token sequences by the GGUF's own vocabulary (llama.cpp)."""
    with vocabulary(model_path) as vocab:
        return [tokenize_condition(scenario, c, vocab, max_tokens) for c in chosen]


@dataclass(frozen=True)
class TorchStudy:
    """torch + peft's part of a study on one GGUF (`StudyEngine`, training/study.py)."""

    scenario: Scenario
    model_path: Path
    architecture: str
    base_sha256: str
    datasets: list[ConditionData]
    params: TrainingParams
    permute: bool  # transformers un-permuted the q/k rows: adapters are permuted back
    n_head: int
    n_head_kv: int
    unused_model: list[Any] = field(default_factory=list)  # loaded by open, not yet trained

    @property
    def adapter_key(self) -> str:
        return "adapter"

    @property
    def base_model(self) -> dict[str, str]:
        return {"path": str(self.model_path), "sha256": self.base_sha256}

    def adapter(self, folder: Path) -> Path:
        return folder / ADAPTER_FILE

    def train(
        self,
        data: ConditionData,
        folder: Path,
        fingerprint: str,
        replicate: Replicate,
        on_event: Callable[[TrainingEvent], None],
        cancel: threading.Event | None,
    ) -> TrainOutcome:
        return train_lora(
            data,
            self._load_base,
            self.params,
            replicate.seed,
            folder,
            fingerprint,
            on_event,
            cancel,
            replicate.index,
        )

    def _load_base(self) -> Any:
        # The first run trains the model `open_torch_study` loaded; each later one (another
        # condition or replicate) a fresh copy.
        if self.unused_model:
            return self.unused_model.pop()
        return load_float32_model(self.model_path, self.base_sha256)

    def save_adapter(
        self,
        data: ConditionData,
        folder: Path,
        outcome: TrainOutcome,
        replicate: Replicate,
        on_event: Callable[[TrainingEvent], None],
    ) -> Path:
        """The PEFT adapter (`peft/`) and its llama.cpp GGUF (`adapter.gguf`)."""
        on_event(TrainingPhase(data.condition, "writing the adapter", replicate.index))
        peft = require("peft")
        model = outcome.model
        model.save_pretrained(folder / PEFT_FOLDER)
        state = peft.get_peft_model_state_dict(model)
        return write_adapter_gguf(
            self.adapter(folder),
            state,
            architecture=self.architecture,
            alpha=self.params.alpha,
            permute_qk=self.permute,
            n_head=self.n_head,
            n_head_kv=self.n_head_kv,
            name=f"{self.scenario.id}-{data.condition}",
        )

    def snapshot(
        self,
        data: ConditionData,
        checkpoint: Path,
        folder: Path,
        fingerprint: str,
        replicate: Replicate,
        total: int,
    ) -> Path:
        """The checkpoint's LoRA weights as an adapter GGUF in `folder`, with the record of
        the run so far (its steps, losses and tokens)."""
        torch = require("torch")
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        folder.mkdir(parents=True, exist_ok=True)
        adapter = write_adapter_gguf(
            self.adapter(folder),
            state["lora"],
            architecture=self.architecture,
            alpha=self.params.alpha,
            permute_qk=self.permute,
            n_head=self.n_head,
            n_head_kv=self.n_head_kv,
            name=f"{self.scenario.id}-{data.condition}-step{int(state['step'])}",
        )
        steps = int(state["step"])
        outcome = TrainOutcome(
            completed=False,
            steps=steps,
            total_steps=total,
            rows=[LossRow(**row) for row in state["rows"]],
            seconds=float(state["seconds"]),
        )
        tokens = run_tokens(data, self.params, replicate.seed, steps)
        write_record(folder, self.record(data, outcome, adapter, fingerprint, replicate, tokens))
        return adapter

    def record(
        self,
        data: ConditionData,
        outcome: TrainOutcome,
        adapter: Path,
        fingerprint: str,
        replicate: Replicate,
        trained_tokens: int,
    ) -> TrainingRecord:
        torch = require("torch")
        precision = resolve_precision(torch, self.params.precision)
        return TrainingRecord(
            **record_fields(self.scenario, data, fingerprint, outcome, replicate, trained_tokens),
            base_model={
                "path": str(self.model_path),
                "sha256": self.base_sha256,
                "architecture": self.architecture,
                "size_bytes": self.model_path.stat().st_size,
            },
            hyperparameters={
                **hyperparameter_fields(self.params, replicate.seed),
                "checkpoint_every": self.params.checkpoint_every,
                "loss": "mean cross-entropy over completion tokens",
                "precision": precision,
                "precision_detail": PRECISION_DETAIL[precision],
            },
            adapter={
                "file": ADAPTER_FILE,
                "sha256": hashlib.sha256(adapter.read_bytes()).hexdigest(),
                "peft": PEFT_FOLDER,
                "qk_rows_permuted": self.permute,
                "trained_precision": precision,
            },
            libraries={**library_versions(), "persona-tui": __version__},
            machine={
                "platform": platform.platform(),
                "machine": platform.machine(),
                "torch_threads": int(torch.get_num_threads()),
                "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
                "cpu_bf16_units": bf16_units(torch) or "none",
            },
        )
