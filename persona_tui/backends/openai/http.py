"""HTTP transport of the OpenAI-compatible backend: httpx, retries, errors named for users.

httpx (imported when a server is first asked, never at start-up) does the HTTP: timeouts,
TLS, chunked streaming. Its client is set up to behave as the standard-library client
before it did: the system's certificate store (not certifi's), no proxy or .netrc from
the environment (a local server must not be sent to a proxy), and no kept-alive
connections, so each request has a connection of its own that a cancel may shut down
(`sse.CancelWatcher`) without touching another thread's request. One `ServerClient` may
be used from several threads.

Retries are done here, not with httpx's transport `retries` (which retries failed
connects only, at once): failures before the first byte of an answer (connection refused,
timeouts, 408/429/502/503/504) are retried a bounded number of times with exponential
backoff that a cancel interrupts. Once the server is found unreachable, later requests
fail after one attempt until it answers again, so a run against a dead server ends
quickly and can be resumed.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from persona_tui.backends.openai.failures import (
    RETRY_STATUSES,
    HttpStatusError,
    RetryableError,
    describe_error,
    error_message,
)
from persona_tui.errors import GenerationError, PersonaError, PromptTooLongError

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class ServerSettings:
    """Timeouts and retries for talking to a server."""

    connect_timeout: float = 10.0
    # Longest wait for the next streamed piece (a long prompt or a busy queue comes first).
    read_timeout: float = 600.0
    retries: int = 3
    backoff_seconds: float = 0.5


def close_quietly(response: httpx.Response) -> None:
    """Close a response (and with it its connection); a broken one may fail to, silently."""
    import httpx

    with contextlib.suppress(OSError, httpx.HTTPError):
        response.close()


class ServerClient:
    """Requests to one server's API (under `base_url`), with the key from `api_key_env`."""

    def __init__(self, base_url: str, *, api_key_env: str, settings: ServerSettings) -> None:
        self.base_url = base_url
        self.settings = settings
        self._api_key_env = api_key_env
        self._state_lock = threading.Lock()
        self._unreachable = False
        self._http: httpx.Client | None = None

    def _client(self) -> httpx.Client:
        """The httpx client, made on first use.

        It is never closed: it keeps no connection open between requests, and closing it
        would break the requests other threads still have in flight.
        """
        import ssl

        import httpx

        with self._state_lock:
            if self._http is None:
                self._http = httpx.Client(
                    timeout=httpx.Timeout(
                        self.settings.read_timeout, connect=self.settings.connect_timeout
                    ),
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
                    verify=ssl.create_default_context(),
                    trust_env=False,
                )
            return self._http

    def _headers(self, *, stream: bool) -> dict[str, str]:
        from persona_tui import __version__

        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            # As http.client sent: a compressing proxy would hold a stream's pieces back.
            "Accept-Encoding": "identity",
            "User-Agent": f"persona-tui/{__version__}",
        }
        if self._api_key_env:
            key = os.environ.get(self._api_key_env, "")
            if key:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def url_path(self, route: str, *, root: bool = False) -> str:
        """`route` under the base URL's path (or under the server root, e.g. /tokenize)."""
        base = urlsplit(self.base_url).path.rstrip("/")
        if root and base.endswith("/v1"):
            base = base[: -len("/v1")]
        return base + route

    def _url(self, path: str) -> httpx.URL:
        """The server's scheme, host and port with `path` (any user:password@ is not sent)."""
        import httpx

        parts = urlsplit(self.base_url)
        return httpx.URL(scheme=parts.scheme, host=parts.hostname or "", port=parts.port, path=path)

    def open(
        self, method: str, path: str, body: dict[str, Any] | None, *, stream: bool
    ) -> httpx.Response:
        """Send a request; return the open 2xx response, which the caller must close.

        Raises RetryableError for failures worth retrying, HttpStatusError for other statuses.
        """
        import httpx

        client = self._client()
        payload = None if body is None else json.dumps(body).encode("utf-8")
        request = client.build_request(
            method, self._url(path), content=payload, headers=self._headers(stream=stream)
        )
        try:
            response = client.send(request, stream=True)
        except (OSError, httpx.TransportError) as error:
            raise RetryableError(describe_error(error), unreachable=True) from error
        if response.status_code >= 400:
            try:
                raw = response.read()
            except (OSError, httpx.HTTPError):
                raw = b""
            finally:
                close_quietly(response)
            message, code = error_message(response.status_code, raw)
            if response.status_code in RETRY_STATUSES:
                raise RetryableError(f"HTTP {response.status_code}: {message}", unreachable=False)
            raise HttpStatusError(response.status_code, message, code)
        return response

    def open_with_retries(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        stream: bool,
        cancel: threading.Event | None = None,
    ) -> httpx.Response | None:
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
        import httpx

        response = self.open_with_retries(
            "GET", self.url_path(route, root=root), None, stream=False
        )
        assert response is not None
        try:
            raw = response.read()
        except (OSError, httpx.HTTPError) as error:
            raise GenerationError(
                f"the server at {self.base_url} failed: {describe_error(error)}"
            ) from error
        finally:
            close_quietly(response)
        try:
            return json.loads(raw), response.headers.get("Server", "")
        except ValueError as error:
            raise GenerationError(
                f"{self.base_url}{route} did not answer with JSON (is this an "
                "OpenAI-compatible API URL? it usually ends in /v1)"
            ) from error

    def post_json(self, route: str, body: dict[str, Any], *, root: bool = False) -> Any:
        """POST a JSON body once (no retries) and return the decoded JSON answer.

        Raises RetryableError or HttpStatusError as `open`, RetryableError when the answer
        breaks off, ValueError when it is not JSON.
        """
        import httpx

        response = self.open("POST", self.url_path(route, root=root), body, stream=False)
        try:
            raw = response.read()
        except (OSError, httpx.HTTPError) as error:
            raise RetryableError(describe_error(error), unreachable=False) from error
        finally:
            close_quietly(response)
        return json.loads(raw)
