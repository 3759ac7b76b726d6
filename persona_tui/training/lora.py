"""One condition's LoRA fine-tune with torch + peft: deterministic, checkpointed, resumable.

Determinism: the LoRA initialisation follows `torch.manual_seed(seed)`, the order of the
examples in epoch E is `random.Random(f"{seed}:{E}")`'s shuffle (so it depends on the step
alone, and a resumed run takes the same batches), dropout is off, and torch runs on a fixed
number of threads: the same data, seed, threads and precision give the same adapter bytes
on the same machine. The loss and the precision (fp32, or bf16 autocast of the matrix
products) are training/torch_compute.py's.

Checkpoints (`checkpoint/state.pt`: the LoRA weights, the optimizer state, the loss rows,
the seconds so far, and a fingerprint of the data and settings) are written atomically
every `checkpoint_every` steps, when `cancel` is set, and on KeyboardInterrupt (unless it
arrives inside an optimizer update, when the previous checkpoint is kept). The next run with
the same fingerprint resumes from it; another fingerprint is an error, never a silent mix.
The loop itself (steps, events, checkpoints, resume) is training/loop.py's, shared with MLX.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_tui._util.atomic import atomic_output
from persona_tui.errors import TrainingError
from persona_tui.training.data import ConditionData, TokenizedExample
from persona_tui.training.deps import require
from persona_tui.training.loop import LossRow as LossRow
from persona_tui.training.loop import TrainOutcome as TrainOutcome
from persona_tui.training.loop import batch_indices as batch_indices
from persona_tui.training.loop import run_training_loop
from persona_tui.training.loop import total_steps as total_steps
from persona_tui.training.params import TrainingEvent, TrainingParams
from persona_tui.training.record import CHECKPOINT_FOLDER
from persona_tui.training.torch_compute import (
    completion_loss,
    frozen_weights_in_bf16,
    resolve_precision,
)

CHECKPOINT_FILE = "state.pt"
_CHECKPOINT_VERSION = 1


def lora_model(
    torch: Any, peft: Any, base: Any, params: TrainingParams, precision: str
) -> tuple[Any, Any]:
    """The LoRA model on `base` and its optimizer (the frozen weights made bf16 once when
    `precision` is bf16, as autocast would cast them at each step)."""
    config = peft.LoraConfig(
        r=params.rank,
        lora_alpha=params.alpha,
        target_modules=list(params.targets),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = peft.get_peft_model(base, config)
    if precision == "bf16":
        frozen_weights_in_bf16(torch, model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(trainable, lr=params.lr, weight_decay=0.0)


def train_lora(
    data: ConditionData,
    load_base: Callable[[], Any],
    params: TrainingParams,
    seed: int,
    folder: Path,
    fingerprint: str,
    on_event: Callable[[TrainingEvent], None],
    cancel: threading.Event | None = None,
    replicate: int = 1,
) -> TrainOutcome:
    """Train (or resume) the condition's adapter in `folder` with `seed` (its replicate's;
    `replicate` names it in the events); see the module docstring."""
    torch = require("torch")
    peft = require("peft")
    if not data.train:
        raise TrainingError(f"condition {data.condition!r} has no training examples")
    if params.threads is not None:
        torch.set_num_threads(params.threads)
    torch.manual_seed(seed)
    precision = resolve_precision(torch, params.precision)
    model, optimizer = lora_model(torch, peft, load_base(), params, precision)
    checkpoint = folder / CHECKPOINT_FOLDER / CHECKPOINT_FILE
    engine = _TorchEngine(
        torch,
        peft,
        model,
        optimizer,
        params.batch_size,
        checkpoint,
        fingerprint,
        precision,
    )
    total = total_steps(len(data.train), params)
    outcome = TrainOutcome(completed=False, steps=0, total_steps=total, model=model)
    return run_training_loop(data, engine, params, seed, on_event, cancel, outcome, replicate)


@dataclass
class _TorchEngine:
    """torch + peft's steps for `run_training_loop` (training/loop.py)."""

    torch: Any
    peft: Any
    model: Any
    optimizer: Any
    batch_size: int
    checkpoint: Path
    fingerprint: str
    precision: str

    def train_step(self, batch: Sequence[TokenizedExample]) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_value = completion_loss(self.torch, self.model, batch, self.precision)
        loss_value.backward()
        self.optimizer.step()
        return float(loss_value.detach())

    def heldout_loss(self, examples: Sequence[TokenizedExample]) -> float:
        return heldout_loss(self.torch, self.model, examples, self.batch_size, self.precision)

    def load_checkpoint(self, outcome: TrainOutcome) -> bool:
        state = _read_checkpoint(self.torch, self.checkpoint, self.fingerprint)
        if state is None:
            return False
        self.peft.set_peft_model_state_dict(self.model, state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])
        outcome.steps = int(state["step"])
        outcome.rows = [LossRow(**row) for row in state["rows"]]
        outcome.seconds = float(state["seconds"])
        return True

    def save_checkpoint(self, outcome: TrainOutcome) -> Path:
        _write_checkpoint(
            self.torch,
            self.peft,
            self.checkpoint,
            self.fingerprint,
            self.model,
            self.optimizer,
            outcome,
        )
        return self.checkpoint


def heldout_loss(
    torch: Any,
    model: Any,
    examples: Sequence[TokenizedExample],
    batch_size: int,
    precision: str = "fp32",
) -> float:
    """Mean cross-entropy per completion token over the held-out examples."""
    model.eval()
    total = 0.0
    count = 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            tokens = sum(len(e.completion) for e in batch)
            total += float(completion_loss(torch, model, batch, precision)) * tokens
            count += tokens
    return total / max(count, 1)


def _read_checkpoint(torch: Any, path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: say so rather than train from scratch silently
        raise TrainingError(
            f"cannot read the checkpoint {path} ({exc}); delete it to start this condition over"
        ) from exc
    if state.get("version") != _CHECKPOINT_VERSION or state.get("fingerprint") != fingerprint:
        raise TrainingError(
            f"the checkpoint {path} is from other data or settings (rank, lr, batch size, "
            "seed, precision, model); train with those again to resume it, or delete "
            f"{path.parent} (or choose another -o folder) to start over"
        )
    return state


def _write_checkpoint(
    torch: Any,
    peft: Any,
    path: Path,
    fingerprint: str,
    model: Any,
    optimizer: Any,
    outcome: TrainOutcome,
) -> None:
    state = {
        "version": _CHECKPOINT_VERSION,
        "fingerprint": fingerprint,
        "step": outcome.steps,
        "lora": peft.get_peft_model_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "rows": [vars(row) for row in outcome.rows],
        "seconds": outcome.seconds,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as staging:
        torch.save(state, staging)
