"""A scripted Backend for UI-only tests (rendering), never for flow tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from persona_tui.backends.base import ChatMessage, GenerationRequest, GenerationResult, TextCallback
from persona_tui.values import ModelInfo


class ScriptedBackend:
    """Answers every prompt with the same pieces of text, streamed one by one."""

    def __init__(self, pieces: Sequence[str]) -> None:
        self.pieces = list(pieces)
        self._info = ModelInfo(
            backend="scripted",
            backend_version="0",
            path="/scripted/model.gguf",
            name="scripted-model",
            sha256="0" * 64,
            size_bytes=1,
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def has_chat_template(self) -> bool:
        return False

    @property
    def chat_template(self) -> str | None:
        return None

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return "\n".join(m.content for m in messages)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(
        self,
        request: GenerationRequest,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        for piece in self.pieces:
            if on_text is not None:
                on_text(piece)
        return GenerationResult(
            text="".join(self.pieces),
            finish_reason="stop",
            prompt_tokens=self.count_tokens(request.prompt),
            completion_tokens=len(self.pieces),
            prompt_tokens_evaluated=self.count_tokens(request.prompt),
            seconds=0.0,
        )

    def close(self) -> None:
        pass
