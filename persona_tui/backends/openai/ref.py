"""The text forms of the OpenAI-compatible backend: server references and chat envelopes.

A reference `openai:URL[#MODEL]` names a server and the model it should run, as a user
writes it in --model or config.toml and as a session records it.

A chat envelope is the prompt text that stands for chat messages: chat mode cannot render
the server's template locally, so `render_chat` gives a header line and the messages as
JSON, which the backend sends to `/chat/completions` (where the server applies the
model's own template). The session records the envelope, exactly what was sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from persona_tui.backends.base import ChatMessage
from persona_tui.errors import GenerationError, ModelLoadError

REF_PREFIX = "openai:"
REF_EXAMPLE = "openai:http://127.0.0.1:8080/v1#MODEL"
CHAT_ENVELOPE_HEADER = "persona-tui chat messages v1\n"


# ------------------------------------------------------------------------ references


@dataclass(frozen=True)
class OpenAIRef:
    """Where the server is and which model it should run ("" = the only one it serves)."""

    base_url: str
    model: str = ""

    @property
    def text(self) -> str:
        return f"{REF_PREFIX}{self.base_url}" + (f"#{self.model}" if self.model else "")


def is_openai_ref(text: str) -> bool:
    return text.startswith(REF_PREFIX)


def parse_openai_ref(text: str) -> OpenAIRef:
    """Parse `openai:URL[#MODEL]`; raise ModelLoadError with an example when it is malformed."""
    if not is_openai_ref(text):
        raise ModelLoadError(f"{text!r} is not a server reference; write it as {REF_EXAMPLE}")
    url, _, model = text[len(REF_PREFIX) :].partition("#")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelLoadError(
            f"{text!r}: expected an http(s) URL after 'openai:', e.g. {REF_EXAMPLE}"
        )
    if parts.query:
        raise ModelLoadError(f"{text!r}: the server URL must not have a query string")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        raise ModelLoadError(f"{text!r}: bad port ({error}); e.g. {REF_EXAMPLE}") from error
    return OpenAIRef(base_url=url.rstrip("/"), model=model.strip())


# ----------------------------------------------------------------------- chat envelope


def render_chat_envelope(messages: Sequence[ChatMessage]) -> str:
    """The prompt text standing for chat messages that the server's template will render."""
    payload = [{"role": m.role, "content": m.content} for m in messages]
    return CHAT_ENVELOPE_HEADER + json.dumps(payload, ensure_ascii=False, indent=1)


def parse_chat_envelope(prompt: str) -> list[dict[str, str]] | None:
    """The messages of a chat envelope, or None when `prompt` is plain text."""
    if not prompt.startswith(CHAT_ENVELOPE_HEADER):
        return None
    try:
        messages = json.loads(prompt[len(CHAT_ENVELOPE_HEADER) :])
    except json.JSONDecodeError as error:
        raise GenerationError(f"a chat-messages prompt is not valid JSON: {error}") from error
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    ):
        raise GenerationError("a chat-messages prompt must be a JSON list of {role, content}")
    return messages
