"""OpenAI-compatible server backend: llama.cpp's llama-server, vLLM, Ollama, LM Studio, ...

A model reference looks like `openai:http://127.0.0.1:8080/v1#MODEL` (the `#MODEL` part may
be left out when the server serves exactly one model). Only the standard library is used
(`http.client` streams Server-Sent Events well), so the backend adds no dependency.

Behaves like the local backends: streamed text, the request's seed and sampling parameters
passed through (`top_k`, `min_p`, `repeat_penalty`/`repetition_penalty` as the extra body
fields llama.cpp's and vLLM's servers accept), stop strings held back across chunks,
cancellation within a token (the connection is closed, which stops the server's work too),
prompt-too-long reported as PromptTooLongError, and a ModelInfo with the server-reported
model id. Unlike a local model it may be called from several threads at once: each call
uses its own connection, so a runner can keep N requests in flight for a batching server.

Transcript mode uses `/completions` with the exact prompt text. Chat mode cannot render the
server's template locally, so `render_chat` returns a *chat envelope*: a header line and the
messages as JSON. `generate` sends an envelope to `/chat/completions`, where the server
applies the model's own template; the session records the envelope, which is exactly
what was sent.

Failures before the first token (connection refused, timeouts, 429/502/503/504) are
retried a bounded number of times with exponential backoff; after the first token a broken
stream fails the generation (GenerationError), never a silently shortened text. Once the
server is found unreachable, later calls fail after one attempt until it answers again, so
a run against a dead server ends quickly and can be resumed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from persona_tui.backends.base import (
    ChatMessage,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    TextCallback,
)
from persona_tui.backends.stream import StopStringStream
from persona_tui.errors import GenerationError, ModelLoadError, PromptTooLongError

OPENAI = "openai"
REF_PREFIX = "openai:"
REF_EXAMPLE = "openai:http://127.0.0.1:8080/v1#MODEL"
CHAT_ENVELOPE_HEADER = "persona-tui chat messages v1\n"
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
_CANCEL_POLL_SECONDS = 0.05


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


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ServerSettings:
    """Timeouts and retries for talking to a server."""

    connect_timeout: float = 10.0
    # Longest wait for the next streamed piece (a long prompt or a busy queue comes first).
    read_timeout: float = 600.0
    retries: int = 3
    backoff_seconds: float = 0.5


class _Retryable(Exception):
    """A failure before the first token that may go away: the caller retries it."""

    def __init__(self, reason: str, *, unreachable: bool) -> None:
        super().__init__(reason)
        self.unreachable = unreachable


class _UnfinishedStream(Exception):
    def __init__(self, pieces: int, message: str) -> None:
        super().__init__(message)
        self.pieces = pieces


class _HttpStatusError(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def _error_message(status: int, raw: bytes) -> tuple[str, str]:
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


def _is_context_error(status: int, message: str, code: str) -> bool:
    lowered = f"{code} {message}".lower()
    return status == 400 and (
        "context_length_exceeded" in lowered
        or "exceed_context_size" in lowered
        or "maximum context length" in lowered
        or ("context" in lowered and "exceed" in lowered)
    )


def _sse_data(response: http.client.HTTPResponse) -> Iterator[str]:
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


class _CancelWatcher:
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


# ---------------------------------------------------------------------------- backend


class OpenAIBackend:
    """A model served over an OpenAI-compatible HTTP API; see the module docstring."""

    # Each generate() uses its own connection: a runner may call it from N threads.
    supports_parallel = True

    def __init__(
        self,
        ref: OpenAIRef,
        model_entry: dict[str, Any],
        *,
        api_key_env: str,
        settings: ServerSettings,
        server: str,
        n_ctx: int | None,
    ) -> None:
        """Use `OpenAIBackend.load`, which checks the server and picks the model."""
        self._ref = ref
        self._model = str(model_entry.get("id", ref.model))
        self._entry = model_entry
        self._api_key_env = api_key_env
        self._settings = settings
        self._server = server
        self._n_ctx = n_ctx or _context_from_entry(model_entry)
        self._state_lock = threading.Lock()
        self._unreachable = False
        self._tokenize_route: str | None = None  # "", "/tokenize" or "/extras/tokenize"
        self._closed = False
        self._info = self._build_info()

    @classmethod
    def load(
        cls,
        ref: str,
        *,
        api_key_env: str = "",
        n_ctx: int | None = None,
        n_threads: int | None = None,
        settings: ServerSettings | None = None,
    ) -> OpenAIBackend:
        """Connect to the server named by `ref` (`openai:URL[#MODEL]`) and check its model.

        `api_key_env` names the environment variable holding the API key (the key itself
        is never stored). `n_threads` is accepted for symmetry with llama.cpp and ignored.
        Raises ModelLoadError when the server is unreachable, refuses the key, or does not
        serve the model.
        """
        parsed = parse_openai_ref(ref)
        if api_key_env and not os.environ.get(api_key_env):
            raise ModelLoadError(
                f"the API key environment variable {api_key_env} (api_key_env in config.toml) "
                "is not set; export it before running"
            )
        probe = cls(
            parsed,
            {"id": parsed.model},
            api_key_env=api_key_env,
            settings=settings or ServerSettings(),
            server="",
            n_ctx=n_ctx,
        )
        models, server = probe._list_models()
        entry = _choose_model(parsed, models)
        return cls(
            parsed,
            entry,
            api_key_env=api_key_env,
            settings=probe._settings,
            server=server,
            n_ctx=n_ctx,
        )

    # ------------------------------------------------------------- model facts

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def model(self) -> str:
        """The server-side model id every request names."""
        return self._model

    @property
    def chat_template(self) -> str | None:
        """None: the template lives on the server and is not visible to the client."""
        return None

    @property
    def has_chat_template(self) -> bool:
        """True: chat mode goes to the server's /chat/completions, which applies its template."""
        return True

    def _build_info(self) -> ModelInfo:
        from persona_tui import __version__

        extra = {
            "base_url": self._ref.base_url,
            "model_id": self._model,
            "chat_template": "applied by the server (/chat/completions)",
        }
        if self._server:
            extra["server"] = self._server
        if self._api_key_env:
            extra["api_key_env"] = self._api_key_env  # the variable's name, never its value
        for key in ("owned_by", "created"):
            if key in self._entry:
                extra[key] = str(self._entry[key])
        return ModelInfo(
            backend=OPENAI,
            backend_version=f"persona-tui {__version__} http.client",
            path=OpenAIRef(self._ref.base_url, self._model).text,
            name=self._model,
            sha256="",  # a server does not expose its weights' digest
            size_bytes=0,
            architecture=str(self._entry.get("architecture", "")),
            quantization="",
            context_length=self._n_ctx,
            chat_template_sha256=None,
            extra=extra,
        )

    # ------------------------------------------------------------------- HTTP

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
        parts = urlsplit(self._ref.base_url)
        timeout = self._settings.connect_timeout
        host = parts.hostname or ""
        if parts.scheme == "https":
            return http.client.HTTPSConnection(host, parts.port, timeout=timeout)
        return http.client.HTTPConnection(host, parts.port, timeout=timeout)

    def _url_path(self, route: str, *, root: bool = False) -> str:
        """`route` under the base URL's path (or under the server root, e.g. /tokenize)."""
        base = urlsplit(self._ref.base_url).path.rstrip("/")
        if root and base.endswith("/v1"):
            base = base[: -len("/v1")]
        return base + route

    def _open(
        self, method: str, path: str, body: dict[str, Any] | None, *, stream: bool
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request; return the open connection and a 2xx response.

        Raises _Retryable for failures worth retrying, _HttpStatusError for other statuses.
        """
        connection = self._connection()
        try:
            connection.connect()
            if connection.sock is not None:
                connection.sock.settimeout(self._settings.read_timeout)
            payload = None if body is None else json.dumps(body).encode("utf-8")
            connection.request(method, path, body=payload, headers=self._headers(stream=stream))
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise _Retryable(_describe(error), unreachable=True) from error
        if response.status >= 400:
            try:
                raw = response.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            connection.close()
            message, code = _error_message(response.status, raw)
            if response.status in RETRY_STATUSES:
                raise _Retryable(f"HTTP {response.status}: {message}", unreachable=False)
            raise _HttpStatusError(response.status, message, code)
        return connection, response

    def _with_retries(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        stream: bool,
        cancel: threading.Event | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse] | None:
        """`_open` with bounded retries and exponential backoff; None when cancelled."""
        attempt = 0
        while True:
            try:
                result = self._open(method, path, body, stream=stream)
            except _Retryable as error:
                with self._state_lock:
                    retries = 0 if self._unreachable else self._settings.retries
                if attempt >= retries:
                    if error.unreachable:
                        with self._state_lock:
                            self._unreachable = True
                    raise GenerationError(self._failure_message(error, attempt + 1)) from error
                delay = self._settings.backoff_seconds * 2**attempt
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

    def _failure_message(self, error: _Retryable, attempts: int) -> str:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if error.unreachable:
            return (
                f"cannot reach the server at {self._ref.base_url} ({error}; {tries}). Is it "
                "running? Start it (e.g. `llama-server -m MODEL.gguf --port 8080` or "
                "`vllm serve MODEL`) or fix the URL in --model / config.toml."
            )
        return f"the server at {self._ref.base_url} is busy or failing ({error}; {tries})"

    def _status_error(self, error: _HttpStatusError, what: str) -> Exception:
        if _is_context_error(error.status, error.message, error.code):
            return PromptTooLongError(
                f"the server at {self._ref.base_url} says the prompt does not fit the context "
                f"of {self._model}: {error.message}. Shorten the prompt (fewer demonstrations "
                "or turns), lower max_tokens, or start the server with a larger context."
            )
        if error.status in (401, 403):
            hint = (
                f"check the key in ${self._api_key_env}"
                if self._api_key_env
                else "set api_key_env for this model in config.toml"
            )
            return GenerationError(
                f"the server at {self._ref.base_url} refused the request (HTTP {error.status}: "
                f"{error.message}); {hint}"
            )
        return GenerationError(
            f"the server at {self._ref.base_url} rejected {what} (HTTP {error.status}: "
            f"{error.message})"
        )

    def _get_json(self, route: str, *, root: bool = False) -> tuple[Any, str]:
        """GET a JSON document (with retries); return it and the Server header."""
        try:
            opened = self._with_retries("GET", self._url_path(route, root=root), None, stream=False)
        except _HttpStatusError as error:
            raise self._status_error(error, f"GET {route}") from error
        assert opened is not None
        connection, response = opened
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise GenerationError(f"the server at {self._ref.base_url} failed: {error}") from error
        finally:
            connection.close()
        try:
            return json.loads(raw), response.getheader("Server", "") or ""
        except ValueError as error:
            raise GenerationError(
                f"{self._ref.base_url}{route} did not answer with JSON (is this an "
                "OpenAI-compatible API URL? it usually ends in /v1)"
            ) from error

    def _post_json(self, route: str, body: dict[str, Any], *, root: bool = False) -> Any:
        opened = self._open("POST", self._url_path(route, root=root), body, stream=False)
        connection, response = opened
        try:
            return json.loads(response.read())
        finally:
            connection.close()

    def _list_models(self) -> tuple[list[dict[str, Any]], str]:
        try:
            listing, server = self._get_json("/models")
        except (GenerationError, PromptTooLongError) as error:
            raise ModelLoadError(str(error)) from error
        data = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(data, list):
            raise ModelLoadError(
                f"{self._ref.base_url}/models did not list models (is this an "
                "OpenAI-compatible API URL? it usually ends in /v1)"
            )
        return [m for m in data if isinstance(m, dict) and "id" in m], server

    # ----------------------------------------------------------------- tokens

    def count_tokens(self, text: str) -> int:
        """Tokens of a plain-text prompt, asked of the server's tokenize endpoint.

        Supported: llama-server and vLLM (`/tokenize`), llama-cpp-python (`/extras/tokenize`).
        A chat envelope's count depends on the server's template and is only known from
        the usage a server reports after generation.
        """
        if parse_chat_envelope(text) is not None:
            raise GenerationError(
                "the token count of chat messages is known only after generation: the "
                "server applies its own chat template"
            )
        routes = ("/tokenize", "/extras/tokenize")
        with self._state_lock:
            known = self._tokenize_route
        if known == "":
            raise GenerationError(
                f"the server at {self._ref.base_url} has no tokenize endpoint "
                "(llama-server and vLLM: /tokenize, llama-cpp-python: /extras/tokenize)"
            )
        for route in (known,) if known else routes:
            body = {
                "model": self._model,
                "content": text,  # llama-server
                "prompt": text,  # vLLM
                "input": text,  # llama-cpp-python
                "add_special": True,
            }
            try:
                reply = self._post_json(route, body, root=True)
            except _HttpStatusError as error:
                if error.status in (404, 405, 422) and known is None:
                    continue
                raise self._status_error(error, f"POST {route}") from error
            except (_Retryable, ValueError, OSError, http.client.HTTPException) as error:
                raise GenerationError(
                    f"the server at {self._ref.base_url} could not count tokens: {error}"
                ) from error
            count = reply.get("count") if isinstance(reply, dict) else None
            tokens = reply.get("tokens") if isinstance(reply, dict) else None
            if not isinstance(count, int) and isinstance(tokens, list):
                count = len(tokens)
            if isinstance(count, int):
                with self._state_lock:
                    self._tokenize_route = route
                return count
        with self._state_lock:
            self._tokenize_route = ""
        raise GenerationError(
            f"the server at {self._ref.base_url} has no tokenize endpoint "
            "(llama-server and vLLM: /tokenize, llama-cpp-python: /extras/tokenize)"
        )

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """A chat envelope: the messages for the server's /chat/completions (see module doc)."""
        return render_chat_envelope(messages)

    # ------------------------------------------------------------- generation

    def _body(
        self, request: GenerationRequest, messages: list[dict[str, str]] | None
    ) -> dict[str, Any]:
        params = request.sampling
        body: dict[str, Any] = {
            "model": self._model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": request.seed,
            # Extensions that llama.cpp's servers, vLLM and LM Studio accept:
            "top_k": params.top_k,
            "min_p": params.min_p,
            "repeat_penalty": params.repeat_penalty,  # llama.cpp
            "repetition_penalty": params.repeat_penalty,  # vLLM
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if messages is None:
            body["prompt"] = request.prompt
        else:
            body["messages"] = messages
        return body

    def generate(
        self,
        request: GenerationRequest,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Stream a completion (or a chat completion for a chat envelope); thread-safe."""
        if self._closed:
            raise GenerationError(f"the connection to {self._ref.base_url} has been closed")
        started = time.perf_counter()
        messages = parse_chat_envelope(request.prompt)
        route = "/completions" if messages is None else "/chat/completions"
        if cancel is not None and cancel.is_set():
            return _result("", "cancelled", 0, 0, 0, started)
        try:
            opened = self._with_retries(
                "POST",
                self._url_path(route),
                self._body(request, messages),
                stream=True,
                cancel=cancel,
            )
        except _HttpStatusError as error:
            raise self._status_error(error, f"the request to {route}") from error
        if opened is None:
            return _result("", "cancelled", 0, 0, 0, started)
        connection, response = opened
        watcher = _CancelWatcher(cancel, connection) if cancel is not None else None
        try:
            return self._read_stream(request, response, messages, on_text, cancel, started)
        except _UnfinishedStream as error:
            if error.pieces == 0:
                self._raise_rejection(route, self._body(request, messages))
            raise GenerationError(str(error)) from None
        finally:
            if watcher is not None:
                watcher.stop()
            connection.close()

    def _raise_rejection(self, route: str, body: dict[str, Any]) -> None:
        """Find why a stream ended before its first piece by asking again without streaming.

        llama-cpp-python's server reports errors such as a prompt longer than the context
        only on non-streamed requests; other servers reject them before streaming.
        """
        probe = {**body, "stream": False, "max_tokens": 1}
        probe.pop("stream_options", None)
        try:
            connection, _response = self._open("POST", self._url_path(route), probe, stream=False)
        except _HttpStatusError as error:
            raise self._status_error(error, f"the request to {route}") from None
        except _Retryable as error:
            raise GenerationError(self._failure_message(error, 1)) from None
        connection.close()

    def _read_stream(
        self,
        request: GenerationRequest,
        response: http.client.HTTPResponse,
        messages: list[dict[str, str]] | None,
        on_text: TextCallback | None,
        cancel: threading.Event | None,
        started: float,
    ) -> GenerationResult:
        stream = StopStringStream(request.stop)
        chunks = 0
        server_finish: str | None = None
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        done = False
        try:
            for data in _sse_data(response):
                if data.strip() == "[DONE]":
                    done = True
                    break
                event = _parse_event(data)
                usage = event.get("usage") or usage
                timings = event.get("timings") or timings
                for choice in event.get("choices") or []:
                    text, ended = _choice_text(choice, chat=messages is not None)
                    if text is not None and (text or ended is None):
                        chunks += 1
                    if text:
                        piece = stream.feed(text.encode("utf-8"))
                        if piece and on_text is not None:
                            on_text(piece)
                    server_finish = ended or server_finish
                if stream.stopped or (cancel is not None and cancel.is_set()):
                    break
        except (OSError, http.client.HTTPException) as error:
            if not (cancel is not None and cancel.is_set()):
                raise GenerationError(
                    f"the connection to {self._ref.base_url} broke after {chunks} streamed "
                    f"pieces ({_describe(error)}); this trial failed, resume the session to "
                    "retry it"
                ) from error
        if cancel is not None and cancel.is_set() and not stream.stopped:
            return _result(stream.text, "cancelled", 0, chunks, 0, started)
        if not (server_finish or stream.stopped):
            # A stream must end with a finish reason; without one the server crashed, was
            # stopped, or (llama-cpp-python's server) interrupted this request for another.
            ending = "closed" if done else "ended"
            raise _UnfinishedStream(
                chunks,
                f"the server at {self._ref.base_url} {ending} the stream after {chunks} "
                "pieces without a finish reason (did it crash, stop, or interrupt this "
                "request for another?); this trial failed, resume the session to retry it",
            )
        tail = stream.finish()
        if tail and on_text is not None:
            on_text(tail)
        finish: FinishReason = "length" if server_finish == "length" else "stop"
        if stream.stopped:
            finish = "stop"
        completion = _int(usage.get("completion_tokens"), chunks)
        prompt_tokens = _int(usage.get("prompt_tokens"), -1)
        if prompt_tokens < 0:
            prompt_tokens = self._prompt_tokens_fallback(request.prompt, messages)
        evaluated = _evaluated(prompt_tokens, usage, timings)
        return _result(stream.text, finish, prompt_tokens, completion, evaluated, started)

    def _prompt_tokens_fallback(self, prompt: str, messages: list[dict[str, str]] | None) -> int:
        """Prompt tokens when the server reported no usage: tokenize it, or 0 if impossible."""
        if messages is not None:
            return 0
        try:
            return self.count_tokens(prompt)
        except (GenerationError, PromptTooLongError):
            return 0

    def close(self) -> None:
        """Nothing stays open between calls; later calls raise GenerationError."""
        self._closed = True


# ---------------------------------------------------------------------------- helpers


def _describe(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection"
    return str(error) or type(error).__name__


def _parse_event(data: str) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except ValueError as error:
        raise GenerationError(
            f"the server sent an event that is not JSON: {data[:200]!r}"
        ) from error
    if not isinstance(event, dict):
        raise GenerationError(f"the server sent an unexpected event: {data[:200]!r}")
    if "error" in event:
        message, _ = _error_message(500, data.encode("utf-8"))
        raise GenerationError(f"the server reported an error while generating: {message}")
    return event


def _choice_text(choice: Any, *, chat: bool) -> tuple[str | None, str | None]:
    """(text of this chunk or None when it carries none, finish reason or None)."""
    if not isinstance(choice, dict):
        return None, None
    finish = choice.get("finish_reason")
    if chat:
        delta = choice.get("delta") or {}
        text = delta.get("content") if isinstance(delta, dict) else None
    else:
        text = choice.get("text")
    return (text if isinstance(text, str) else None), (str(finish) if finish else None)


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _evaluated(prompt_tokens: int, usage: dict[str, Any], timings: dict[str, Any]) -> int:
    """Prompt tokens the server evaluated (not served from its prefix cache), if it says.

    llama-server reports `timings.prompt_n`; vLLM (with prompt-token details enabled)
    `usage.prompt_tokens_details.cached_tokens`. Otherwise the whole prompt is counted,
    an upper bound.
    """
    if "prompt_n" in timings:
        return _int(timings.get("prompt_n"), prompt_tokens)
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        return max(prompt_tokens - int(details["cached_tokens"]), 0)
    return prompt_tokens


def _context_from_entry(entry: dict[str, Any]) -> int:
    """The context length a model listing reports (vLLM: max_model_len; llama-server: meta)."""
    for value in (
        entry.get("max_model_len"),
        entry.get("context_length"),
        (entry.get("meta") or {}).get("n_ctx") if isinstance(entry.get("meta"), dict) else None,
    ):
        if isinstance(value, int) and value > 0:
            return value
    return 0


def _choose_model(ref: OpenAIRef, models: list[dict[str, Any]]) -> dict[str, Any]:
    ids = [str(m["id"]) for m in models]
    if ref.model:
        for entry in models:
            if str(entry["id"]) == ref.model:
                return entry
        if not models:  # some servers list nothing; trust the name given
            return {"id": ref.model}
        raise ModelLoadError(
            f"the server at {ref.base_url} does not serve {ref.model!r}; it serves: "
            f"{', '.join(ids)} (write openai:{ref.base_url}#ONE_OF_THESE)"
        )
    if len(models) == 1:
        return models[0]
    if not models:
        raise ModelLoadError(
            f"the server at {ref.base_url} lists no models; name one: openai:{ref.base_url}#MODEL"
        )
    raise ModelLoadError(
        f"the server at {ref.base_url} serves several models ({', '.join(ids)}); name one: "
        f"openai:{ref.base_url}#MODEL"
    )


def _result(
    text: str,
    finish: FinishReason,
    prompt_tokens: int,
    completion_tokens: int,
    evaluated: int,
    started: float,
) -> GenerationResult:
    return GenerationResult(
        text=text,
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        prompt_tokens_evaluated=evaluated,
        seconds=time.perf_counter() - started,
    )
