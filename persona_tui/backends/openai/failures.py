"""What can go wrong talking to an OpenAI-compatible server, in words a user can act on.

`RetryableError` is a failure before the first byte of an answer that may go away
(connection refused, a timeout, 408/429/502/503/504); `HttpStatusError` is any other
status >= 400, with the server's own message. `error_message` reads that message from
the error bodies of OpenAI, vLLM and llama.cpp; `describe_error` names a transport
failure in a few words ("connection refused", "timed out", ...).
"""

from __future__ import annotations

import json
from http import HTTPStatus

RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})


class RetryableError(Exception):
    """A failure before the first token that may go away: the caller retries it."""

    def __init__(self, reason: str, *, unreachable: bool) -> None:
        super().__init__(reason)
        self.unreachable = unreachable


class HttpStatusError(Exception):
    """A status >= 400 that is not worth retrying, with the server's message and code."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    @property
    def is_context_error(self) -> bool:
        """True when the server says the prompt (with max_tokens) exceeds the context."""
        lowered = f"{self.code} {self.message}".lower()
        return self.status == 400 and (
            "context_length_exceeded" in lowered
            or "exceed_context_size" in lowered
            or "maximum context length" in lowered
            or ("context" in lowered and "exceed" in lowered)
        )


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def error_message(status: int, raw: bytes) -> tuple[str, str]:
    """The server's error message and code from an error body (OpenAI, vLLM, llama.cpp)."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return (text[:500] or _status_phrase(status)), ""
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or json.dumps(error)
        code = error.get("code") or error.get("type") or ""
        return str(message)[:1000], str(code)
    return str(error)[:1000], ""


def describe_error(error: BaseException) -> str:
    """A short phrase for a transport failure ("connection refused", "timed out", ...).

    httpx wraps the socket's error (an httpx error raised from an httpcore error raised
    while handling an OSError), so the chain of causes is searched for the socket's own.
    """
    import httpx

    cause: BaseException | None = error
    for _ in range(8):  # the chain is short; a bound guards against a cycle
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, TimeoutError | httpx.TimeoutException):
            return "timed out"
        cause = cause.__cause__ or cause.__context__
    text = str(error)
    if isinstance(error, httpx.RemoteProtocolError) and (
        "disconnected" in text.lower() or "closed connection" in text.lower()
    ):
        return "the server closed the connection"
    return text or type(error).__name__
