"""Plain value types shared by the scenario format, the session record and the backends.

They sit at the bottom of the package (they import nothing of ours), so a scenario or a
session can name sampling parameters and a model record without importing any backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters of one generation (the scenario's defaults after overrides)."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    max_tokens: int = 128


@dataclass(frozen=True)
class ModelInfo:
    """Everything about a loaded model that a session records for reproducibility."""

    backend: str
    backend_version: str
    path: str
    name: str
    sha256: str
    size_bytes: int
    architecture: str = ""
    quantization: str = ""
    context_length: int = 0
    chat_template_sha256: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
