"""One condition's LoRA fine-tune with MLX (mlx-lm's LoRA layers): native on Apple Silicon.

The same token sequences and loss as the torch path (training/lora.py): mean cross-entropy
over the completion tokens of a right-padded batch, AdamW with weight decay 0 at a constant
learning rate, the same seeded batch order (`batch_indices`), dropout off. The LoRA layers
are mlx-lm's (`linear_to_lora_layers`, scale = alpha / rank as in peft), their A matrices
initialised from `mx.random.key(seed)` (never MLX's process-wide random state), B at zero.

The adapter is what `mlx_lm.load(model, adapter_path=folder)` loads: `adapters.safetensors`
and `adapter_config.json` in `folder`. Measured on Linux (mlx[cpu]): the same data and seed
give the same adapter bytes.

Checkpoints (`checkpoint/mlx_state.safetensors`: the LoRA weights and the optimizer state;
`checkpoint/mlx_state.json`: the step, loss rows, seconds and the fingerprint of the data
and settings) are written every `checkpoint_every` steps, when `cancel` is set, and on
KeyboardInterrupt outside an update; the next run with the same fingerprint resumes from
them (another fingerprint is an error), to the same adapter bytes as an uninterrupted run.
The loop itself (steps, events, checkpoints, resume) is training/loop.py's, shared with torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_tui._util.atomic import atomic_write_text
from persona_tui.backends.adapter_files import MLX_ADAPTER
from persona_tui.errors import TrainingError
from persona_tui.training.data import ConditionData, TokenizedExample
from persona_tui.training.loop import LossRow, TrainOutcome, run_training_loop
from persona_tui.training.params import TrainingEvent, TrainingParams

MLX_ADAPTER_FILE = MLX_ADAPTER.weights  # "adapters.safetensors"
MLX_ADAPTER_CONFIG = MLX_ADAPTER.config  # "adapter_config.json"
CHECKPOINT_ARRAYS = "mlx_state.safetensors"
CHECKPOINT_META = "mlx_state.json"
_CHECKPOINT_VERSION = 1
# mlx-lm's module paths inside a decoder block for the HF projection names.
_MLX_KEYS = {
    "q_proj": "self_attn.q_proj",
    "k_proj": "self_attn.k_proj",
    "v_proj": "self_attn.v_proj",
    "o_proj": "self_attn.o_proj",
    "gate_proj": "mlp.gate_proj",
    "up_proj": "mlp.up_proj",
    "down_proj": "mlp.down_proj",
}


# mlx-lm architectures whose Model.__call__ is `head(self.model(inputs))` and nothing else
# (no soft-capping or logit scale): the ones the projection skip may take apart.
_PLAIN_HEADS = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma3_text"})

MlxTrainOutcome = TrainOutcome  # the MLX path's outcome (no `model`: it trains one given)


def lora_config(params: TrainingParams, num_layers: int) -> dict[str, Any]:
    """`adapter_config.json` as mlx-lm reads it (`load_adapters`)."""
    unknown = [t for t in params.targets if t not in _MLX_KEYS]
    if unknown:
        raise TrainingError(
            f"the MLX trainer knows the projections {', '.join(_MLX_KEYS)}, not {unknown}"
        )
    return {
        "fine_tune_type": "lora",
        "num_layers": num_layers,
        "lora_parameters": {
            "rank": params.rank,
            "scale": params.alpha / params.rank,
            "dropout": 0.0,
            "keys": [_MLX_KEYS[t] for t in params.targets],
        },
    }


def add_lora(model: Any, params: TrainingParams, seed: int) -> dict[str, Any]:
    """Freeze `model`, add LoRA layers to every block, initialise them from `seed`;
    returns the adapter config."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.lora import LoRALinear
    from mlx_lm.tuner.utils import linear_to_lora_layers

    config = lora_config(params, len(model.layers))
    model.freeze()
    linear_to_lora_layers(model, config["num_layers"], config["lora_parameters"])
    key = mx.random.key(seed)
    for _name, module in sorted(model.named_modules(), key=lambda item: str(item[0])):
        if isinstance(module, LoRALinear):
            key, sub = mx.random.split(key)
            inputs, rank = module.lora_a.shape
            bound = 1 / inputs**0.5
            module.lora_a = mx.random.uniform(-bound, bound, (inputs, rank), key=sub)
            module.lora_b = mx.zeros_like(module.lora_b)
    mx.eval(dict(tree_flatten(model.trainable_parameters())))
    return config


def output_head(model: Any) -> tuple[Any, Any] | None:
    """(body, output projection) of an mlx-lm model whose logits are exactly the projection
    of its body's last hidden state (the `_PLAIN_HEADS` architectures: their own `lm_head`,
    or the tied embedding's `as_linear`); None for any other (the full-logits path)."""
    if getattr(model, "model_type", None) not in _PLAIN_HEADS or not hasattr(model, "model"):
        return None
    if "lm_head" in model:
        return model.model, model.lm_head
    return model.model, model.model.embed_tokens.as_linear


def batch_loss(model: Any, batch: Sequence[TokenizedExample], *, full_logits: bool = False) -> Any:
    """Mean cross-entropy over the batch's completion tokens (right-padded, pads ignored).

    As on the torch path (training/torch_compute.py) the output projection runs only on
    the positions whose next token carries loss, gathered from the body's hidden states;
    `full_logits=True` (and an architecture outside `_PLAIN_HEADS`) projects every position.
    """
    import mlx.core as mx
    import mlx.nn as nn

    width = max(len(e.ids) for e in batch)
    ids = mx.array([list(e.ids) + [0] * (width - len(e.ids)) for e in batch])
    parts = None if full_logits else output_head(model)
    if parts is None:
        positions = mx.arange(1, width)[None]  # the position of each target token
        starts = mx.array([[len(e.prompt)] for e in batch])
        ends = mx.array([[len(e.ids)] for e in batch])
        mask = mx.logical_and(positions >= starts, positions < ends)
        logits = model(ids[:, :-1]).astype(mx.float32)
        losses = nn.losses.cross_entropy(logits, ids[:, 1:]) * mask
        return losses.sum() / mask.sum()
    body, head = parts
    rows = [r for r, e in enumerate(batch) for _ in range(len(e.prompt) - 1, len(e.ids) - 1)]
    cols = [p for e in batch for p in range(len(e.prompt) - 1, len(e.ids) - 1)]
    targets = mx.array([t for e in batch for t in e.completion])
    hidden = body(ids[:, :-1])[mx.array(rows), mx.array(cols)]
    logits = head(hidden).astype(mx.float32)
    return nn.losses.cross_entropy(logits, targets).mean()


def heldout_loss(model: Any, examples: Sequence[TokenizedExample], batch_size: int) -> float:
    """Mean cross-entropy per completion token over the held-out examples."""
    total = 0.0
    count = 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        tokens = sum(len(e.completion) for e in batch)
        total += float(batch_loss(model, batch).item()) * tokens
        count += tokens
    return total / max(count, 1)


def train_mlx_lora(
    data: ConditionData,
    model: Any,
    params: TrainingParams,
    seed: int,
    adapter_folder: Path,
    on_event: Callable[[TrainingEvent], None],
    cancel: threading.Event | None = None,
    *,
    checkpoint: Path,
    fingerprint: str,
    replicate: int = 1,
) -> MlxTrainOutcome:
    """Train (or resume, from `checkpoint`, a folder) the condition's adapter on `model` (an
    mlx-lm model, changed in place) with `seed` (its replicate's; `replicate` names it in
    the events); write it to `adapter_folder` when complete."""
    import mlx.optimizers as optim
    from mlx.nn.utils import value_and_grad
    from mlx.utils import tree_flatten

    if not data.train:
        raise TrainingError(f"condition {data.condition!r} has no training examples")
    config = add_lora(model, params, seed)
    optimizer = optim.AdamW(learning_rate=params.lr, weight_decay=0.0)
    engine = _MlxEngine(
        model,
        optimizer,
        value_and_grad(model, batch_loss),
        params.batch_size,
        checkpoint,
        fingerprint,
    )
    outcome = run_training_loop(data, engine, params, seed, on_event, cancel, replicate=replicate)
    if not outcome.completed:
        return outcome
    adapter_folder.mkdir(parents=True, exist_ok=True)
    _save_arrays(
        adapter_folder / MLX_ADAPTER_FILE, dict(tree_flatten(model.trainable_parameters()))
    )
    atomic_write_text(
        adapter_folder / MLX_ADAPTER_CONFIG, json.dumps(config, indent=2) + "\n", mode=0o644
    )
    return outcome


@dataclass
class _MlxEngine:
    """mlx-lm's steps for `run_training_loop` (training/loop.py)."""

    model: Any
    optimizer: Any
    loss_and_grad: Any
    batch_size: int
    checkpoint: Path
    fingerprint: str

    def train_step(self, batch: Sequence[TokenizedExample]) -> float:
        import mlx.core as mx

        loss_value, grads = self.loss_and_grad(self.model, batch)
        self.optimizer.update(self.model, grads)
        mx.eval(self.model.trainable_parameters(), self.optimizer.state, loss_value)
        return float(loss_value.item())

    def heldout_loss(self, examples: Sequence[TokenizedExample]) -> float:
        return heldout_loss(self.model, examples, self.batch_size)

    def load_checkpoint(self, outcome: MlxTrainOutcome) -> bool:
        return _read_checkpoint(
            self.checkpoint, self.fingerprint, self.model, self.optimizer, outcome
        )

    def save_checkpoint(self, outcome: MlxTrainOutcome) -> Path:
        _write_checkpoint(self.checkpoint, self.fingerprint, self.model, self.optimizer, outcome)
        return self.checkpoint


def _save_arrays(path: Path, arrays: dict[str, Any]) -> None:
    """mx.save_safetensors, atomically (it names the file itself, so stage it in a folder)."""
    import mlx.core as mx

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".staging-") as staging:
        staged = Path(staging) / path.name
        mx.save_safetensors(str(staged), arrays)
        with staged.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(staged, path)


def _write_checkpoint(
    folder: Path, fingerprint: str, model: Any, optimizer: Any, outcome: MlxTrainOutcome
) -> None:
    from mlx.utils import tree_flatten

    lora: dict[str, Any] = dict(tree_flatten(model.trainable_parameters()))
    state: dict[str, Any] = dict(tree_flatten(optimizer.state))
    arrays = {f"lora/{k}": v for k, v in lora.items()}
    arrays |= {f"optimizer/{k}": v for k, v in state.items()}
    _save_arrays(folder / CHECKPOINT_ARRAYS, arrays)
    meta = {
        "version": _CHECKPOINT_VERSION,
        "fingerprint": fingerprint,
        "step": outcome.steps,
        "rows": [vars(row) for row in outcome.rows],
        "seconds": outcome.seconds,
        "arrays_sha256": hashlib.sha256((folder / CHECKPOINT_ARRAYS).read_bytes()).hexdigest(),
    }
    atomic_write_text(folder / CHECKPOINT_META, json.dumps(meta, indent=1) + "\n", mode=0o644)


def _read_checkpoint(
    folder: Path, fingerprint: str, model: Any, optimizer: Any, outcome: MlxTrainOutcome
) -> bool:
    """Load a checkpoint into the model, optimizer and outcome; False when there is none."""
    import mlx.core as mx
    from mlx.utils import tree_unflatten

    meta_path = folder / CHECKPOINT_META
    if not meta_path.is_file():
        return False
    arrays_path = folder / CHECKPOINT_ARRAYS
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        digest = hashlib.sha256(arrays_path.read_bytes()).hexdigest()
        if digest != meta.get("arrays_sha256"):
            raise ValueError("its arrays do not match its record")
        arrays = mx.load(str(arrays_path))
    except (OSError, ValueError, RuntimeError) as exc:
        raise TrainingError(
            f"cannot read the checkpoint in {folder} ({exc}); delete it to start this "
            "condition over"
        ) from exc
    if meta.get("version") != _CHECKPOINT_VERSION or meta.get("fingerprint") != fingerprint:
        raise TrainingError(
            f"the checkpoint in {folder} is from other data or settings (rank, lr, batch size, "
            f"seed, model); train with those again to resume it, or delete {folder} (or "
            "choose another -o folder) to start over"
        )
    assert isinstance(arrays, dict)
    lora = [(k.removeprefix("lora/"), v) for k, v in arrays.items() if k.startswith("lora/")]
    model.load_weights(lora, strict=False)
    state = [
        (k.removeprefix("optimizer/"), v) for k, v in arrays.items() if k.startswith("optimizer/")
    ]
    optimizer.state = tree_unflatten(state)
    outcome.steps = int(meta["step"])
    outcome.rows = [LossRow(**row) for row in meta["rows"]]
    outcome.seconds = float(meta["seconds"])
    return True
