"""OpenAI-compatible server backend: llama.cpp's llama-server, vLLM, Ollama, LM Studio, ...

A model reference looks like `openai:http://127.0.0.1:8080/v1#MODEL` (the `#MODEL` part may
be left out when the server serves exactly one model; see `ref`). The HTTP is httpx's,
imported only when a server is used (see `http`).

Behaves like the local backends: streamed text, the request's seed and sampling parameters
passed through (`top_k`, `min_p`, `repeat_penalty`/`repetition_penalty` as the extra body
fields llama.cpp's and vLLM's servers accept), stop strings held back across chunks,
cancellation within a token (the connection is closed, which stops the server's work too),
prompt-too-long reported as PromptTooLongError, and a ModelInfo with the server-reported
model id. Unlike a local model it may be called from several threads at once: each call
uses its own connection, so a runner can keep N requests in flight for a batching server.

Transcript mode uses `/completions` with the exact prompt text. Chat mode cannot render the
server's template locally, so `render_chat` returns a *chat envelope* (see `ref`),
which `generate` sends to `/chat/completions`, where the server applies the model's own
template.

Failures before the first token are retried with backoff (see `http`); after the
first token a broken stream fails the generation (GenerationError), never a silently
shortened text (see `streaming`). Likelihood probes read echoed prompt log-probabilities
(see `logprobs`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from persona_tui.backend_names import OPENAI
from persona_tui.backends.base import ChatMessage, GenerationRequest, GenerationResult, TextCallback
from persona_tui.backends.common import cancelled_before_start, is_cancelled
from persona_tui.backends.openai.failures import HttpStatusError, RetryableError
from persona_tui.backends.openai.http import ServerClient, ServerSettings, close_quietly
from persona_tui.backends.openai.logprobs import (
    continuation_values,
    echo_body,
    no_prompt_logprobs,
)
from persona_tui.backends.openai.protocol import (
    choose_model,
    context_from_entry,
    request_body,
    token_count,
    tokenize_body,
)
from persona_tui.backends.openai.ref import (
    OpenAIRef,
    parse_chat_envelope,
    parse_openai_ref,
    render_chat_envelope,
)
from persona_tui.backends.openai.sse import CancelWatcher
from persona_tui.backends.openai.streaming import UnfinishedStream, read_stream
from persona_tui.errors import GenerationError, ModelLoadError, PersonaError, PromptTooLongError
from persona_tui.values import ModelInfo


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
        client: ServerClient,
        server: str,
        n_ctx: int | None,
    ) -> None:
        """Use `OpenAIBackend.load`, which checks the server and picks the model."""
        self._ref = ref
        self._model = str(model_entry.get("id", ref.model))
        self._entry = model_entry
        self._api_key_env = api_key_env
        self._client = client
        self._server = server
        self._n_ctx = n_ctx or context_from_entry(model_entry)
        self._state_lock = threading.Lock()
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
        client = ServerClient(
            parsed.base_url, api_key_env=api_key_env, settings=settings or ServerSettings()
        )
        probe = cls(
            parsed,
            {"id": parsed.model},
            api_key_env=api_key_env,
            client=client,
            server="",
            n_ctx=n_ctx,
        )
        models, server = probe._list_models()
        entry = choose_model(parsed, models)
        return cls(
            parsed, entry, api_key_env=api_key_env, client=client, server=server, n_ctx=n_ctx
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
        import httpx

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
            backend_version=f"persona-tui {__version__} httpx {httpx.__version__}",
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

    # ------------------------------------------------------------------ listing

    def _list_models(self) -> tuple[list[dict[str, Any]], str]:
        try:
            listing, server = self._client.get_json("/models")
        except HttpStatusError as error:
            reason = self._client.error_for_status(error, "GET /models", model=self._model)
            raise ModelLoadError(str(reason)) from error
        except GenerationError as error:
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
            try:
                reply = self._client.post_json(route, tokenize_body(self._model, text), root=True)
            except HttpStatusError as error:
                if error.status in (404, 405, 422) and known is None:
                    continue
                raise self._client.error_for_status(
                    error, f"POST {route}", model=self._model
                ) from error
            except (RetryableError, ValueError) as error:
                raise GenerationError(
                    f"the server at {self._ref.base_url} could not count tokens: {error}"
                ) from error
            count = token_count(reply)
            if count is not None:
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
        if is_cancelled(cancel):
            return cancelled_before_start(started, prompt_tokens=0)
        try:
            opened = self._client.open_with_retries(
                "POST",
                self._client.url_path(route),
                request_body(self._model, request, messages),
                stream=True,
                cancel=cancel,
            )
        except HttpStatusError as error:
            raise self._client.error_for_status(
                error, f"the request to {route}", model=self._model
            ) from error
        if opened is None:
            return cancelled_before_start(started, prompt_tokens=0)
        watcher = CancelWatcher(cancel, opened) if cancel is not None else None
        try:
            return read_stream(
                opened,
                request,
                chat=messages is not None,
                base_url=self._ref.base_url,
                on_text=on_text,
                cancel=cancel,
                started=started,
                prompt_tokens_fallback=lambda: self._prompt_tokens_fallback(
                    request.prompt, messages
                ),
            )
        except UnfinishedStream as error:
            if error.pieces == 0:
                self._raise_rejection(route, request_body(self._model, request, messages))
            raise GenerationError(str(error)) from None
        finally:
            if watcher is not None:
                watcher.stop()
            close_quietly(opened)

    # ------------------------------------------------------------ logprobs

    def continuation_logprobs(self, prompt: str, continuation: str) -> list[float]:
        """Log-probabilities of `continuation`'s tokens after `prompt` (ContinuationLogprobs).

        One echoed `/completions` request for prompt + continuation (see `logprobs`).
        """
        if self._closed:
            raise GenerationError(f"the connection to {self._ref.base_url} has been closed")
        if parse_chat_envelope(prompt) is not None:
            raise PersonaError(
                "likelihood probes on a server need a plain-text prompt (prompt_mode = "
                '"transcript"): chat completions return no prompt log-probabilities'
            )
        try:
            answer = self._client.post_json(
                "/completions", echo_body(self._model, prompt + continuation)
            )
        except HttpStatusError as error:
            raise PersonaError(
                f"{no_prompt_logprobs(self._ref.base_url)} (it answered: {error})"
            ) from None
        except RetryableError as error:
            raise GenerationError(self._client.failure_message(error, 1)) from None
        return continuation_values(answer, len(continuation), self._ref.base_url)

    def _raise_rejection(self, route: str, body: dict[str, Any]) -> None:
        """Find why a stream ended before its first piece by asking again without streaming.

        llama-cpp-python's server reports errors such as a prompt longer than the context
        only on non-streamed requests; other servers reject them before streaming.
        """
        probe = {**body, "stream": False, "max_tokens": 1}
        probe.pop("stream_options", None)
        try:
            response = self._client.open("POST", self._client.url_path(route), probe, stream=False)
        except HttpStatusError as error:
            raise self._client.error_for_status(
                error, f"the request to {route}", model=self._model
            ) from None
        except RetryableError as error:
            raise GenerationError(self._client.failure_message(error, 1)) from None
        close_quietly(response)

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
