"""HTTP transport of the OpenAI-compatible backend: connections, retries, errors, SSE.

Only the standard library is used (`http.client` streams Server-Sent Events well). Each
request opens its own connection, so several threads may use one `ServerClient`.

Failures before the first byte of an answer (connection refused, timeouts,
408/429/502/503/504) are retried a bounded number of times with exponential backoff. Once
the server is found unreachable, later requests fail after one attempt until it answers
again, so a run against a dead server ends quickly and can be resumed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from persona_tui.errors import GenerationError, PersonaError, PromptTooLongError

RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
_CANCEL_POLL_SECONDS = 0.05

Opened = tuple[http.client.HTTPConnection, http.client.HTTPResponse]


@dataclass(frozen=True)
class ServerSettings:
    """Timeouts and retries for talking to a server."""

    connect_timeout: float = 10.0
    # Longest wait for the next streamed piece (a long prompt or a busy queue comes first).
    read_timeout: float = 600.0
    retries: int = 3
    backoff_seconds: float = 0.5


# --------------------------------------------------------------------------- errors


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


def error_message(status: int, raw: bytes) -> tuple[str, str]:
    """The server's error message and code from an error body (OpenAI, vLLM, llama.cpp)."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return (text[:500] or http.client.responses.get(status, "error")), ""
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or json.dumps(error)
        code = error.get("code") or error.get("type") or ""
        return str(message)[:1000], str(code)
    return str(error)[:1000], ""


def describe_error(error: BaseException) -> str:
    """A short phrase for a connection failure ("connection refused", "timed out", ...)."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection"
    return str(error) or type(error).__name__


# ------------------------------------------------------------------------ streaming


def sse_data(response: http.client.HTTPResponse) -> Iterator[str]:
    """The `data` payloads of a Server-Sent Events stream, one per event."""
    lines: list[str] = []
    while True:
        raw = response.readline()
        if not raw:
            if lines:
                yield "\n".join(lines)
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith(":"):
            continue  # a comment, e.g. a keep-alive ping
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            lines.append(value)
        elif field == "error":  # llama-server's in-stream error event
            raise GenerationError(f"the server reported an error: {value}")


class CancelWatcher:
    """Closes a connection when `cancel` is set, unblocking a read that waits for the server."""

    def __init__(self, cancel: threading.Event, connection: http.client.HTTPConnection) -> None:
        self._cancel = cancel
        self._connection = connection
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="openai-cancel", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(_CANCEL_POLL_SECONDS):
            if self._cancel.is_set():
                sock = self._connection.sock
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


# --------------------------------------------------------------------------- client


class ServerClient:
    """Requests to one server's API (under `base_url`), with the key from `api_key_env`."""

    def __init__(self, base_url: str, *, api_key_env: str, settings: ServerSettings) -> None:
        self.base_url = base_url
        self.settings = settings
        self._api_key_env = api_key_env
        self._state_lock = threading.Lock()
        self._unreachable = False

    def _headers(self, *, stream: bool) -> dict[str, str]:
        from persona_tui import __version__

        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": f"persona-tui/{__version__}",
        }
        if self._api_key_env:
            key = os.environ.get(self._api_key_env, "")
            if key:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def _connection(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.base_url)
        timeout = self.settings.connect_timeout
        host = parts.hostname or ""
        if parts.scheme == "https":
            return http.client.HTTPSConnection(host, parts.port, timeout=timeout)
        return http.client.HTTPConnection(host, parts.port, timeout=timeout)

    def url_path(self, route: str, *, root: bool = False) -> str:
        """`route` under the base URL's path (or under the server root, e.g. /tokenize)."""
        base = urlsplit(self.base_url).path.rstrip("/")
        if root and base.endswith("/v1"):
            base = base[: -len("/v1")]
        return base + route

    def open(self, method: str, path: str, body: dict[str, Any] | None, *, stream: bool) -> Opened:
        """Send a request; return the open connection and a 2xx response.

        Raises RetryableError for failures worth retrying, HttpStatusError for other statuses.
        """
        connection = self._connection()
        try:
            connection.connect()
            if connection.sock is not None:
                connection.sock.settimeout(self.settings.read_timeout)
            payload = None if body is None else json.dumps(body).encode("utf-8")
            connection.request(method, path, body=payload, headers=self._headers(stream=stream))
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise RetryableError(describe_error(error), unreachable=True) from error
        if response.status >= 400:
            try:
                raw = response.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            connection.close()
            message, code = error_message(response.status, raw)
            if response.status in RETRY_STATUSES:
                raise RetryableError(f"HTTP {response.status}: {message}", unreachable=False)
            raise HttpStatusError(response.status, message, code)
        return connection, response

    def open_with_retries(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        stream: bool,
        cancel: threading.Event | None = None,
    ) -> Opened | None:
        """`open` with bounded retries and exponential backoff; None when cancelled.

        Raises GenerationError when the retries are used up, HttpStatusError as `open`.
        """
        attempt = 0
        while True:
            try:
                result = self.open(method, path, body, stream=stream)
            except RetryableError as error:
                with self._state_lock:
                    retries = 0 if self._unreachable else self.settings.retries
                if attempt >= retries:
                    if error.unreachable:
                        with self._state_lock:
                            self._unreachable = True
                    raise GenerationError(self.failure_message(error, attempt + 1)) from error
                delay = self.settings.backoff_seconds * 2**attempt
                attempt += 1
                if cancel is not None:
                    if cancel.wait(delay):
                        return None
                else:
                    time.sleep(delay)
                continue
            with self._state_lock:
                self._unreachable = False
            return result

    def failure_message(self, error: RetryableError, attempts: int) -> str:
        """What to tell the user when a retryable failure persisted for `attempts` tries."""
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if error.unreachable:
            return (
                f"cannot reach the server at {self.base_url} ({error}; {tries}). Is it "
                "running? Start it (e.g. `llama-server -m MODEL.gguf --port 8080` or "
                "`vllm serve MODEL`) or fix the URL in --model / config.toml."
            )
        return f"the server at {self.base_url} is busy or failing ({error}; {tries})"

    def error_for_status(self, error: HttpStatusError, what: str, *, model: str) -> PersonaError:
        """The error to raise for a status the server answered `what` (for `model`) with."""
        if error.is_context_error:
            return PromptTooLongError(
                f"the server at {self.base_url} says the prompt does not fit the context "
                f"of {model}: {error.message}. Shorten the prompt (fewer demonstrations "
                "or turns), lower max_tokens, or start the server with a larger context."
            )
        if error.status in (401, 403):
            hint = (
                f"check the key in ${self._api_key_env}"
                if self._api_key_env
                else "set api_key_env for this model in config.toml"
            )
            return GenerationError(
                f"the server at {self.base_url} refused the request (HTTP {error.status}: "
                f"{error.message}); {hint}"
            )
        return GenerationError(
            f"the server at {self.base_url} rejected {what} (HTTP {error.status}: {error.message})"
        )

    def get_json(self, route: str, *, root: bool = False) -> tuple[Any, str]:
        """GET a JSON document (with retries); return it and the Server header.

        Raises GenerationError, or HttpStatusError for a status the caller must explain.
        """
        opened = self.open_with_retries("GET", self.url_path(route, root=root), None, stream=False)
        assert opened is not None
        connection, response = opened
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise GenerationError(f"the server at {self.base_url} failed: {error}") from error
        finally:
            connection.close()
        try:
            return json.loads(raw), response.getheader("Server", "") or ""
        except ValueError as error:
            raise GenerationError(
                f"{self.base_url}{route} did not answer with JSON (is this an "
                "OpenAI-compatible API URL? it usually ends in /v1)"
            ) from error

    def post_json(self, route: str, body: dict[str, Any], *, root: bool = False) -> Any:
        """POST a JSON body once (no retries) and return the decoded JSON answer."""
        connection, response = self.open(
            "POST", self.url_path(route, root=root), body, stream=False
        )
        try:
            return json.loads(response.read())
        finally:
            connection.close()
