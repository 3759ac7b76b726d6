"""Training hyperparameters and the progress events of a fine-tune (small frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

# HF module names of the attention and MLP projections (llama, gemma, qwen, mistral ...).
DEFAULT_TARGETS: Final = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


@dataclass(frozen=True)
class TrainingParams:
    """What a fine-tune is trained with; every field goes into the training record.

    `threads` None: torch's default for this machine (recorded). The same data, seed and
    threads give the same adapter bytes on the same machine. `precision` (torch only):
    "fp32", "bf16" (autocast of the matrix products; weights and optimizer state stay
    float32) or "auto" (bf16 where the CPU has bfloat16 matrix units, training/torch_compute.py);
    the study resolves "auto" before it fingerprints a condition.
    """

    epochs: int = 1
    rank: int = 8
    alpha: float = 16.0
    lr: float = 1e-4
    batch_size: int = 4
    max_steps: int | None = None
    checkpoint_every: int = 10
    threads: int | None = None
    targets: tuple[str, ...] = DEFAULT_TARGETS
    max_tokens: int = 1024  # longest example (prompt + completion) in tokens
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    def fingerprint_fields(self) -> dict[str, object]:
        """The fields a checkpoint must share to be resumed (not epochs/max_steps: they
        only say how far to go). The precision only when it is bf16 (resolved from "auto"
        by the torch study), so the adapters and checkpoints made before it was a setting
        (fp32), and MLX's (which keeps its model's dtype), still match."""
        fields: dict[str, object] = {
            "rank": self.rank,
            "alpha": self.alpha,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "targets": list(self.targets),
            "max_tokens": self.max_tokens,
        }
        if self.precision == "bf16":
            fields["precision"] = self.precision
        return fields


@dataclass(frozen=True)
class TrainingPhase:
    """A slow preparation step is starting (weights conversion, tokenizing ...)."""

    condition: str  # "" for steps shared by every condition
    message: str


@dataclass(frozen=True)
class TrainingStarted:
    condition: str
    total_steps: int
    done_steps: int  # > 0 when resuming from a checkpoint
    train_examples: int
    heldout_examples: int


@dataclass(frozen=True)
class StepFinished:
    condition: str
    step: int
    total_steps: int
    epoch: int
    loss: float  # mean token loss of this step's batch (completion tokens)
    tokens_per_second: float  # all tokens (prompt + completion) of this run's steps so far
    eta_seconds: float


@dataclass(frozen=True)
class HeldoutEvaluated:
    condition: str
    step: int
    loss: float


@dataclass(frozen=True)
class CheckpointSaved:
    condition: str
    step: int
    path: Path


ConditionStatus = Literal["complete", "interrupted", "already-trained"]


@dataclass(frozen=True)
class ConditionResult:
    """What one training condition left in its folder."""

    condition: str
    status: ConditionStatus
    folder: Path
    adapter: Path | None  # the llama.cpp adapter GGUF (None while interrupted)
    steps: int
    total_steps: int
    train_loss: float | None
    heldout_loss: float | None
    seconds: float


@dataclass(frozen=True)
class ConditionFinished:
    result: ConditionResult


TrainingEvent = (
    TrainingPhase
    | TrainingStarted
    | StepFinished
    | HeldoutEvaluated
    | CheckpointSaved
    | ConditionFinished
)
