"""The Backend protocol: what the runner needs from any engine.

Every trial becomes a plain text prompt before generation (chat templates are
rendered by the backend via `render_chat`), so the session can record exactly
what the model saw.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from persona_tui.values import FinishReason, ModelInfo, SamplingParams

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    seed: int
    sampling: SamplingParams
    stop: tuple[str, ...] = ()
    # Length (in characters) of the leading part of `prompt` that other trials share, e.g.
    # a condition's framing and demonstrations; a backend with a prompt cache may use it
    # to reuse that part in full. 0: no hint.
    framing_chars: int = 0


@dataclass(frozen=True)
class GenerationResult:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    # Prompt tokens the engine actually evaluated (the rest came from its prefix cache).
    prompt_tokens_evaluated: int
    seconds: float


TextCallback = Callable[[str], None]


class Backend(Protocol):
    """A loaded model. One instance is used by one thread at a time (implementations guard it)."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def has_chat_template(self) -> bool: ...

    @property
    def chat_template(self) -> str | None:
        """The model's own chat template text, or None when it has none."""
        ...

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """Render messages with the model's own chat template, ending with the assistant's turn."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self,
        request: GenerationRequest,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Generate a continuation of `request.prompt`, calling `on_text` with each new piece.

        Stops at a stop string (not included in the text), at `max_tokens`, or within a
        token of `cancel` being set (finish_reason "cancelled").
        Raises PromptTooLongError when the prompt does not fit the context.
        """
        ...

    def close(self) -> None: ...
