"""What one torch training step computes, and in which numeric precision.

The loss (`completion_loss`) is the mean cross-entropy over the batch's completion tokens.
The model body runs on every position (the prompt's keys and values are needed), but the
output projection, 262,144 × 640 on Gemma 3 270M (62% of its weights), runs only on the
positions whose next token carries loss: their hidden states are gathered first, then the
projection and the architecture's final logit soft-capping (read from the model config)
are applied to them alone. The prompt's logits were never used; skipping them leaves the
loss as it was (to float rounding: the same rows, multiplied in other blocks).
`full_logits=True` is the old path (every position's logits, then the mask), kept for the
tests and `bench/bench_train.py` to compare against.

Precision (`resolve_precision`): "fp32" runs everything in float32; "bf16" runs the model's
matrix products under torch's CPU autocast in bfloat16: the frozen base weights are
rounded to bfloat16 once (`frozen_weights_in_bf16`: what autocast would do at every step),
while the LoRA matrices, their gradients and the optimizer state stay float32 and the loss
is taken on float32 logits. "auto" is bf16 where the CPU has bfloat16 matrix units (AMX
tiles, or AVX512-BF16 dot products), else fp32; what ran is recorded in training.toml. On
the same CPU path and threads the same seed gives the same adapter bytes in either.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, Final, Literal

from persona_tui.training.data import TokenizedExample

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: Final = ("auto", "fp32", "bf16")
IGNORE = -100

# Config keys of output scalings this module does not reproduce: such a model takes the
# full-logits path (its own forward), never a silently different loss.
_UNHANDLED_LOGIT_SCALING: Final = ("logit_scale", "logits_scaling", "output_multiplier_scale")


def bf16_units(torch: Any) -> str:
    """The CPU's bfloat16 matrix units as torch sees them: "amx", "avx512_bf16" or ""."""
    cpu = getattr(torch, "cpu", None)
    if cpu is None:
        return ""
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return "amx"
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "avx512_bf16"
    return ""


def resolve_precision(torch: Any, requested: str) -> Literal["fp32", "bf16"]:
    """The precision a run takes: `requested`, or for "auto" bf16 where the CPU has
    bfloat16 matrix units (`bf16_units`) and fp32 elsewhere."""
    if requested == "fp32":
        return "fp32"
    if requested == "bf16":
        return "bf16"
    if requested != "auto":
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    return "bf16" if bf16_units(torch) else "fp32"


def precision_scope(torch: Any, precision: str) -> Any:
    """The context a forward runs in: bf16 autocast of the matrix products, or nothing."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def frozen_weights_in_bf16(torch: Any, model: Any) -> int:
    """Give every frozen linear layer (the base model's, the output projection's) a bfloat16
    copy of its weight, in place; returns how many. Under bf16 autocast this is what the
    autocast would cast them to at every forward (round to nearest), made once: the same
    numbers, without re-reading the float32 weights each step. A tied output projection
    gets its own copy; the token embedding keeps its float32 weight, and the LoRA matrices
    (trainable) stay float32."""
    count = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(module, torch.nn.Linear) or weight is None or weight.requires_grad:
            continue
        if weight.dtype == torch.float32:
            module.weight = torch.nn.Parameter(
                weight.detach().to(torch.bfloat16), requires_grad=False
            )
            count += 1
    return count


def _inputs(torch: Any, batch: Sequence[TokenizedExample]) -> tuple[Any, Any, Any]:
    """Right-padded ids, their attention mask, and each position's next-token label
    (IGNORE where the next token is prompt, padding or past the end)."""
    width = max(len(e.ids) for e in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    targets = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, example in enumerate(batch):
        sequence = torch.tensor(example.ids, dtype=torch.long)
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
        start = len(example.prompt)
        targets[row, start - 1 : len(sequence) - 1] = sequence[start:]
    return ids, mask, targets


def output_head(model: Any) -> tuple[Any, Any, float | None] | None:
    """(body, output projection, final logit soft-cap) of a causal LM (peft-wrapped or
    not), or None when its logits are not simply the projection of the body's last hidden
    state (the caller then takes the full-logits path)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    if any(getattr(config, key, None) not in (None, 1, 1.0) for key in _UNHANDLED_LOGIT_SCALING):
        return None
    body = getattr(base, "model", None)
    head = base.get_output_embeddings()
    if body is None or head is None:
        return None
    softcap = getattr(config, "final_logit_softcapping", None)
    return body, head, None if softcap is None else float(softcap)


def completion_loss(
    torch: Any,
    model: Any,
    batch: Sequence[TokenizedExample],
    precision: str = "fp32",
    *,
    full_logits: bool = False,
) -> Any:
    """Mean cross-entropy over the batch's completion tokens (see the module docstring)."""
    ids, mask, targets = _inputs(torch, batch)
    parts = None if full_logits else output_head(model)
    with precision_scope(torch, precision):
        if parts is None:
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            chosen = targets.reshape(-1)
            return torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]),
                chosen,
                ignore_index=IGNORE,
                reduction="mean",
            )
        body, head, softcap = parts
        hidden = body(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        where = targets != IGNORE
        logits = head(hidden[where])
    logits = logits.float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.nn.functional.cross_entropy(logits, targets[where], reduction="mean")
