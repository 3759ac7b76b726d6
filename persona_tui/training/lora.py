"""One condition's LoRA fine-tune with torch + peft: deterministic, checkpointed, resumable.

Determinism: the LoRA initialisation follows `torch.manual_seed(seed)`, the order of the
examples in epoch E is `random.Random(f"{seed}:{E}")`'s shuffle (so it depends on the step
alone, and a resumed run takes the same batches), dropout is off, and torch runs on a fixed
number of threads: the same data, seed and threads give the same adapter bytes on the same
machine.

Checkpoints (`checkpoint/state.pt`: the LoRA weights, the optimizer state, the loss rows,
the seconds so far, and a fingerprint of the data and settings) are written atomically
every `checkpoint_every` steps, when `cancel` is set, and on KeyboardInterrupt (unless it
arrives inside an optimizer update, when the previous checkpoint is kept). The next run with
the same fingerprint resumes from it; another fingerprint is an error, never a silent mix.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_tui._util.atomic import atomic_output
from persona_tui.errors import TrainingError
from persona_tui.training.data import ConditionData, TokenizedExample
from persona_tui.training.deps import require
from persona_tui.training.params import (
    CheckpointSaved,
    HeldoutEvaluated,
    StepFinished,
    TrainingEvent,
    TrainingParams,
    TrainingStarted,
)

CHECKPOINT_FILE = "state.pt"
_CHECKPOINT_VERSION = 1
IGNORE = -100


@dataclass
class LossRow:
    step: int
    epoch: int
    train_loss: float | None
    heldout_loss: float | None
    seconds: float


@dataclass
class TrainOutcome:
    """What `train_lora` ended with; `model` is the peft model (for saving, comparing)."""

    completed: bool
    steps: int
    total_steps: int
    rows: list[LossRow] = field(default_factory=list)
    seconds: float = 0.0
    model: Any = None

    @property
    def train_loss(self) -> float | None:
        losses = [r.train_loss for r in self.rows if r.train_loss is not None]
        return losses[-1] if losses else None

    @property
    def heldout_loss(self) -> float | None:
        losses = [r.heldout_loss for r in self.rows if r.heldout_loss is not None]
        return losses[-1] if losses else None


def total_steps(n_train: int, params: TrainingParams) -> int:
    """Optimizer steps of a run: epochs × batches per epoch, capped by max_steps."""
    steps = params.epochs * math.ceil(n_train / params.batch_size)
    return min(steps, params.max_steps) if params.max_steps is not None else steps


def batch_indices(n_train: int, step: int, batch_size: int, seed: int) -> list[int]:
    """The examples of optimizer step `step` (each epoch a seeded shuffle, last batch short)."""
    per_epoch = math.ceil(n_train / batch_size)
    epoch, index = divmod(step, per_epoch)
    order = list(range(n_train))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order[index * batch_size : (index + 1) * batch_size]


def train_lora(
    data: ConditionData,
    load_base: Callable[[], Any],
    params: TrainingParams,
    seed: int,
    folder: Path,
    fingerprint: str,
    on_event: Callable[[TrainingEvent], None],
    cancel: threading.Event | None = None,
) -> TrainOutcome:
    """Train (or resume) the condition's adapter in `folder`; see the module docstring."""
    torch = require("torch")
    peft = require("peft")
    if not data.train:
        raise TrainingError(f"condition {data.condition!r} has no training examples")
    if params.threads is not None:
        torch.set_num_threads(params.threads)
    condition = data.condition
    torch.manual_seed(seed)
    base = load_base()
    config = peft.LoraConfig(
        r=params.rank,
        lora_alpha=params.alpha,
        target_modules=list(params.targets),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = peft.get_peft_model(base, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=0.0)
    total = total_steps(len(data.train), params)
    per_epoch = math.ceil(len(data.train) / params.batch_size)
    checkpoint = folder / "checkpoint" / CHECKPOINT_FILE
    outcome = TrainOutcome(completed=False, steps=0, total_steps=total, model=model)
    state = _read_checkpoint(torch, checkpoint, fingerprint)
    if state is not None:
        peft.set_peft_model_state_dict(model, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        outcome.steps = int(state["step"])
        outcome.rows = [LossRow(**row) for row in state["rows"]]
        outcome.seconds = float(state["seconds"])
    on_event(
        TrainingStarted(
            condition, total, min(outcome.steps, total), len(data.train), len(data.heldout)
        )
    )
    started = time.perf_counter()
    offset = outcome.seconds

    def elapsed() -> float:
        return offset + time.perf_counter() - started

    def save() -> None:
        outcome.seconds = elapsed()
        _write_checkpoint(torch, peft, checkpoint, fingerprint, model, optimizer, outcome)
        on_event(CheckpointSaved(condition, outcome.steps, checkpoint))

    if outcome.steps == 0 and state is None and data.heldout:
        loss = heldout_loss(torch, model, data.heldout, params.batch_size)
        outcome.rows.append(LossRow(0, 0, None, loss, 0.0))
        on_event(HeldoutEvaluated(condition, 0, loss))
    run_tokens = 0
    run_steps = 0
    in_update = False
    try:
        while outcome.steps < total:
            step = outcome.steps
            batch = [
                data.train[i] for i in batch_indices(len(data.train), step, params.batch_size, seed)
            ]
            in_update = True
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss_value = _batch_loss(torch, model, batch)
            loss_value.backward()
            optimizer.step()
            in_update = False
            outcome.steps = step + 1
            run_steps += 1
            run_tokens += sum(len(e.ids) for e in batch)
            loss = float(loss_value.detach())
            run_seconds = time.perf_counter() - started
            per_step = run_seconds / run_steps
            row = LossRow(outcome.steps, step // per_epoch, loss, None, elapsed())
            outcome.rows.append(row)
            last = outcome.steps == total
            if data.heldout and (outcome.steps % params.checkpoint_every == 0 or last):
                row.heldout_loss = heldout_loss(torch, model, data.heldout, params.batch_size)
            on_event(
                StepFinished(
                    condition,
                    outcome.steps,
                    total,
                    step // per_epoch,
                    loss,
                    run_tokens / max(run_seconds, 1e-9),
                    per_step * (total - outcome.steps),
                )
            )
            if row.heldout_loss is not None:
                on_event(HeldoutEvaluated(condition, outcome.steps, row.heldout_loss))
            if last:
                break
            if cancel is not None and cancel.is_set():
                save()
                outcome.seconds = elapsed()
                return outcome
            if outcome.steps % params.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        if not in_update and outcome.steps > 0:
            save()
        raise
    outcome.seconds = elapsed()
    outcome.completed = True
    return outcome


def _batch_loss(torch: Any, model: Any, batch: Sequence[TokenizedExample]) -> Any:
    """Mean cross-entropy over the batch's completion tokens (right-padded, pads ignored)."""
    width = max(len(e.ids) for e in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, example in enumerate(batch):
        sequence = torch.tensor(example.ids, dtype=torch.long)
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
        labels[row, len(example.prompt) : len(sequence)] = sequence[len(example.prompt) :]
    logits = model(input_ids=ids, attention_mask=mask).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE,
        reduction="mean",
    )


def heldout_loss(
    torch: Any, model: Any, examples: Sequence[TokenizedExample], batch_size: int
) -> float:
    """Mean cross-entropy per completion token over the held-out examples."""
    model.eval()
    total = 0.0
    count = 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            tokens = sum(len(e.completion) for e in batch)
            total += float(_batch_loss(torch, model, batch)) * tokens
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
            "seed, model); train with those again to resume it, or delete "
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
