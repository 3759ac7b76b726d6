"""Training hyperparameters, the progress events of a fine-tune and the plan of a study's
runs (small frozen dataclasses).

Every event of a run names its condition and its replicate (1-based; a condition is trained
`replicates` times, training/conditions.py)."""

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
    replicate: int = 1


@dataclass(frozen=True)
class TrainingStarted:
    condition: str
    total_steps: int
    done_steps: int  # > 0 when resuming from a checkpoint
    train_examples: int
    heldout_examples: int
    replicate: int = 1


@dataclass(frozen=True)
class StepFinished:
    condition: str
    step: int
    total_steps: int
    epoch: int
    loss: float  # mean token loss of this step's batch (completion tokens)
    tokens_per_second: float  # all tokens (prompt + completion) of this run's steps so far
    eta_seconds: float
    replicate: int = 1


@dataclass(frozen=True)
class HeldoutEvaluated:
    condition: str
    step: int
    loss: float
    replicate: int = 1


@dataclass(frozen=True)
class CheckpointSaved:
    condition: str
    step: int
    path: Path
    replicate: int = 1


ConditionStatus = Literal["complete", "interrupted", "already-trained"]


@dataclass(frozen=True)
class ConditionResult:
    """What one replicate of a training condition left in its folder."""

    condition: str
    status: ConditionStatus
    folder: Path
    adapter: Path | None  # the llama.cpp adapter GGUF (None while interrupted)
    steps: int
    total_steps: int
    train_loss: float | None
    heldout_loss: float | None
    seconds: float
    replicate: int = 1  # which training run of the condition (1-based)
    replicates: int = 1  # of how many


@dataclass(frozen=True)
class ConditionFinished:
    result: ConditionResult


@dataclass(frozen=True)
class TrainingRun:
    """One (condition, replicate) of a study's plan: its steps and the tokens they train on
    (prompt and completion); `done` when it is finished already (it will be skipped)."""

    condition: str
    replicate: int
    steps: int
    tokens: int
    done: bool = False


@dataclass(frozen=True)
class TrainingPlan:
    """A study's work before it starts: every run, and the seconds per trained token
    measured by earlier runs on the same base model and precision (None: none yet, the
    estimate comes after the first step; training/estimate.py)."""

    runs: tuple[TrainingRun, ...]
    replicates: int
    seconds_per_token: float | None = None
    measured_runs: int = 0  # the earlier runs `seconds_per_token` comes from

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.condition for r in self.runs))

    @property
    def left(self) -> tuple[TrainingRun, ...]:
        """The runs still to train (an interrupted one counted whole)."""
        return tuple(r for r in self.runs if not r.done)

    @property
    def tokens_left(self) -> int:
        return sum(r.tokens for r in self.left)

    @property
    def estimate_seconds(self) -> float | None:
        """The wall time of the runs left, from `seconds_per_token`; None without it."""
        if self.seconds_per_token is None:
            return None
        return self.tokens_left * self.seconds_per_token


@dataclass(frozen=True)
class TrainingPlanned:
    """Sent once, after tokenizing and before the first run: what the study will train."""

    plan: TrainingPlan


TrainingEvent = (
    TrainingPlanned
    | TrainingPhase
    | TrainingStarted
    | StepFinished
    | HeldoutEvaluated
    | CheckpointSaved
    | ConditionFinished
)
