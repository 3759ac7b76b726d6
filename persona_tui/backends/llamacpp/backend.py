"""The llama.cpp backend: a GGUF model loaded with llama-cpp-python.

What it guarantees on top of llama-cpp-python:
- llama.cpp never writes to the terminal (see `load`, which constructs the model).
- Bad files (missing, a directory, not GGUF, truncated, corrupt) raise ModelLoadError,
  because the header is checked in Python before llama.cpp opens the file.
- One thread at a time uses the `Llama` object (a per-instance lock): concurrent use of
  one llama.cpp context aborts the whole process.
- Generation streams decoded text, holds back text that may be the start of a stop
  string, never splits a UTF-8 character, stops within a token of `cancel` being set,
  and reuses the KV cache for the prompt prefix it shares with the previous request.
- Chat templates are used only when the GGUF carries one (no silent llama-2 fallback).
- `generate_batch` decodes up to MAX_SEQUENCES sequences together (batch_runner.py,
  batched.py).
- `use_adapter` applies one LoRA adapter GGUF or none; each file is loaded once, checked
  first (a bad file raises ModelLoadError naming it), and switching forgets every cache
  (adapters.py).

This module keeps loading, the prompt cache, one-by-one generation, the thread governor
and scoring; tokens and the chat template are vocab.py's, the ModelInfo info.py's, the
lock, closed check and prompt-size check backends/local.py's (shared with MLX).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from persona_tui.backends.base import (
    ChatMessage,
    GenerationRequest,
    GenerationResult,
    LogprobScope,
    TextCallback,
)
from persona_tui.backends.common import (
    CachedModelInfo,
    cancelled_before_start,
    check_n_ctx,
    emit,
    is_cancelled,
    make_result,
    no_chat_template_error,
    stream_tokens,
)
from persona_tui.backends.cpu import default_n_threads
from persona_tui.backends.cpu_load import ThreadGovernor
from persona_tui.backends.gguf_file import GGUFHeader, read_gguf_header
from persona_tui.backends.llamacpp.adapters import LlamaAdapters
from persona_tui.backends.llamacpp.batch_runner import EVAL_BLOCK, LlamaBatchRunner
from persona_tui.backends.llamacpp.batching import batch_ends, reusable_prefix, split_points
from persona_tui.backends.llamacpp.info import LlamaFacts, build_llama_info
from persona_tui.backends.llamacpp.load import (
    LoadedLlama,
    construct_llama,
    construct_vocab_llama,
    llama_cpp_version,
)
from persona_tui.backends.llamacpp.logprobs import LlamaLogprobScope, ScoredPrompt
from persona_tui.backends.llamacpp.sampling import sample_tokens
from persona_tui.backends.llamacpp.steering import LlamaResidualStream
from persona_tui.backends.llamacpp.vocab import LlamaVocab
from persona_tui.backends.local import engine_failures
from persona_tui.backends.stream import StopStringStream
from persona_tui.errors import ModelLoadError
from persona_tui.values import ModelInfo

__all__ = ["EVAL_BLOCK", "LlamaCppBackend"]

DEFAULT_MAX_CONTEXT = 4096


class LlamaCppBackend(LlamaBatchRunner, LlamaResidualStream):
    """A GGUF model loaded with llama-cpp-python; see the module docstring for guarantees."""

    def __init__(
        self,
        loaded: LoadedLlama,
        path: Path,
        header: GGUFHeader,
        *,
        n_ctx: int,
        n_threads: int,
        version: str,
        governor: ThreadGovernor | None = None,
    ) -> None:
        llama = loaded.llama
        self._llama = llama
        self._loaded = loaded
        self._path = path
        self._header = header
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        # n_threads chosen per generation from the free cores (None: fixed n_threads).
        self._governor = governor
        self._threads_now = n_threads
        self._version = version
        self._lock = threading.Lock()
        self._info = CachedModelInfo()
        self._tokens = LlamaVocab(llama, path.name)
        self._n_ctx_train = int(llama._model.n_ctx_train())
        # Sizes of the eval() calls of the current generation, recorded by _planned_eval:
        # the first one is the part of the prompt that was not in the KV cache.
        self._eval_sizes: list[int] = []
        # Batch plan of the prompt being evaluated (empty: blocks aligned to EVAL_BLOCK).
        self._plan: tuple[int, ...] = ()
        # The last prompt whose planned batches fill the KV cache, and its plan; generated
        # tokens after it were evaluated one by one and are never reused (see batching).
        self._cached_tokens: list[int] = []
        self._cached_ends: tuple[int, ...] = ()
        # The last prompt scored through logprob_scope: the next one may reuse its blocks.
        self._scored = ScoredPrompt()
        # LoRA adapters loaded so far and the one applied now (adapters.py).
        self._adapters = LlamaAdapters(path, header)
        # Steering (the control vector set now) and the context that reads activations
        # (steering.py, activations.py).
        self._cvec = None
        self._measurement = None
        original_eval = llama.eval

        def _planned_eval(tokens: Sequence[int]) -> None:
            self._eval_sizes.append(len(tokens))
            start = int(llama.n_tokens)
            ends = self._plan or batch_ends(start + len(tokens), EVAL_BLOCK)
            index = 0
            for size in split_points(start, len(tokens), ends):
                original_eval(tokens[index : index + size])
                index += size

        llama.eval = _planned_eval

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        repack: str = "auto",
    ) -> LlamaCppBackend:
        """Load the GGUF at `path`.

        n_ctx None → min(trained context, 4096); n_threads None → up to
        `default_n_threads()`, fewer while other programs keep cores busy (cpu_load);
        repack "auto" | "on" | "off": llama.cpp's extra buffer types (see `choose_repack`).
        Raises ModelLoadError naming the path and the problem.
        """
        path = Path(path).expanduser().absolute()
        header = read_gguf_header(path)
        check_n_ctx(n_ctx)
        if n_threads is not None and n_threads < 1:
            raise ModelLoadError(f"n_threads={n_threads} must be at least 1.")
        trained = header.context_length or DEFAULT_MAX_CONTEXT
        context = n_ctx if n_ctx is not None else min(trained, DEFAULT_MAX_CONTEXT)
        threads = n_threads if n_threads is not None else default_n_threads()
        governor = ThreadGovernor(threads) if n_threads is None else None
        loaded = construct_llama(path, header, n_ctx=context, n_threads=threads, repack=repack)
        backend = cls(
            loaded,
            path,
            header,
            n_ctx=context,
            n_threads=threads,
            version=llama_cpp_version(),
            governor=governor,
        )
        if governor is not None:
            backend._use_threads(governor.settle())
        return backend

    @classmethod
    @contextlib.contextmanager
    def vocabulary(cls, path: Path) -> Iterator[LlamaCppBackend]:
        """The GGUF's tokenizer and chat template without its weights (llama.cpp
        `vocab_only`): tokenizing and rendering only (training data), closed afterwards."""
        path = Path(path).expanduser().absolute()
        header = read_gguf_header(path)
        loaded = construct_vocab_llama(path, header)
        backend = cls(loaded, path, header, n_ctx=0, n_threads=1, version=llama_cpp_version())
        try:
            yield backend
        finally:
            backend.close()

    # ---------------------------------------------------------- model facts

    @property
    def path(self) -> Path:
        return self._path

    @property
    def load_facts(self) -> LoadedLlama:
        """How the weights were loaded: the repack choice, buffer types, system info."""
        return self._loaded

    @property
    def chat_template(self) -> str | None:
        """The GGUF's `tokenizer.chat_template`, or None when it has none."""
        return self._header.chat_template

    @property
    def has_chat_template(self) -> bool:
        return self._header.chat_template is not None

    @property
    def info(self) -> ModelInfo:
        """What a session records; the file's sha256 is computed (and cached) on first use."""
        return self._info.get(self._build_info)

    def _build_info(self) -> ModelInfo:
        facts = LlamaFacts(
            n_ctx=self._n_ctx,
            n_ctx_train=self._n_ctx_train,
            n_threads=self._n_threads,
            governed=self._governor is not None,
            n_vocab=self._tokens.n_vocab,
            add_bos=self._tokens.add_bos,
            eval_block=EVAL_BLOCK,
            version=self._version,
        )
        return build_llama_info(self._path, self._header, self._loaded, facts)

    # ---------------------------------------------------------------- chat

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """Render with the GGUF's own chat template, ending with the assistant's turn."""
        template = self._header.chat_template
        if template is None:
            raise no_chat_template_error(f"The model {self._path}", "tokenizer.chat_template")
        with self._lock:
            self._check_open()
            return self._tokens.render_chat(template, messages)

    # ------------------------------------------------------------ tokens (vocab.py)

    def _tokenize(self, text: str) -> list[int]:
        return self._tokens.tokenize(text)

    def _piece(self, token: int) -> bytes:
        return self._tokens.piece(token)

    def _is_end(self, token: int) -> bool:
        return self._tokens.is_end(token)

    def _framing_tokens(self, request: GenerationRequest, tokens: Sequence[int]) -> int:
        return self._tokens.framing_tokens(request, tokens)

    @property
    def end_of_turn_token(self) -> int:
        """The token a chat turn ends with (backends.base.EndOfTurnToken)."""
        return self._tokens.end_of_turn_token

    # -------------------------------------------------------------- generate

    def generate(
        self,
        request: GenerationRequest,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Generate a continuation of `request.prompt` (see the Backend protocol).

        The prompt must leave room for max_tokens: prompt tokens + max_tokens > n_ctx
        raises PromptTooLongError before anything is evaluated, so a response is never
        cut short by the context. `completion_tokens` counts sampled tokens, not the
        end-of-generation token. Bytes that are not valid UTF-8 become U+FFFD.
        """
        with self._lock:
            self._check_open()
            self._govern_threads()
            # The KV cache will hold this prompt along the generation's batch plan; a later
            # scoring must not reuse it as if it were its own (see logprobs.py).
            self._scored.tokens = []
            started = time.perf_counter()
            (tokens,) = self._prompt_tokens([request.prompt], request.sampling.max_tokens)
            # The KV cache may be inconsistent after a failed decode: start afresh.
            with engine_failures(
                lambda exc: f"llama.cpp failed while generating: {exc}", self._llama.reset
            ):
                return self._generate_locked(request, tokens, on_text, cancel, started)

    def _generate_locked(
        self,
        request: GenerationRequest,
        tokens: list[int],
        on_text: TextCallback | None,
        cancel: threading.Event | None,
        started: float,
    ) -> GenerationResult:

        sampling = request.sampling
        stream = StopStringStream(request.stop)
        self._eval_sizes = []
        if is_cancelled(cancel):
            return cancelled_before_start(started, prompt_tokens=len(tokens))
        llama = self._llama
        ends = batch_ends(len(tokens), EVAL_BLOCK, self._framing_tokens(request, tokens))
        cached = min(int(llama.n_tokens), len(self._cached_tokens))
        keep = reusable_prefix(self._cached_tokens[:cached], self._cached_ends, tokens, ends)
        self._cached_tokens, self._cached_ends = [], ()  # until this prompt is evaluated
        # Llama.eval removes the KV cells from n_tokens on and evaluates the rest.
        llama.n_tokens = keep
        self._plan = ends
        generator = sample_tokens(llama, tokens[keep:], sampling, request.seed)
        try:
            finish, completion_tokens = stream_tokens(
                generator,
                token_bytes=self._piece,
                is_end=self._is_end,
                stream=stream,
                on_text=on_text,
                cancel=cancel,
                max_tokens=sampling.max_tokens,
            )
        finally:
            generator.close()
            self._plan = ()
            if self._eval_sizes:
                self._cached_tokens, self._cached_ends = tokens, ends
        emit(on_text, stream.finish())
        return make_result(
            stream.text,
            finish,
            prompt_tokens=len(tokens),
            completion_tokens=completion_tokens,
            evaluated=self._eval_sizes[0] if self._eval_sizes else 0,
            started=started,
        )

    # ------------------------------------------------ threads (generate_batch: batch_runner.py)

    def _govern_threads(self) -> None:
        """Before an evaluation: as many threads as the governor allows now (if any)."""
        if self._governor is not None:
            self._use_threads(self._governor.threads())

    def _use_threads(self, threads: int) -> None:
        """Run the next evaluations on `threads` threads (results do not depend on it)."""
        if threads != self._threads_now and self._llama is not None:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self._llama._ctx.ctx, threads, threads)
            self._threads_now = threads

    @property
    def threads_now(self) -> int:
        """The threads the last generation ran on."""
        return self._threads_now

    # ------------------------------------------------------------- logprobs

    @contextlib.contextmanager
    def logprob_scope(self) -> Iterator[LogprobScope]:
        """The model under this backend's lock, for scoring (backends.base.TokenLogprobs).

        Afterwards the prompt cache is forgotten: the KV cache now ends with single-token
        branch decodes, which the next generation must not reuse (it evaluates its whole
        prompt once).
        """
        try:
            with self._lock:
                self._check_open()
                llama = self._llama
                with engine_failures(
                    lambda error: f"llama.cpp failed while judging: {error}", llama.reset
                ):
                    yield LlamaLogprobScope(
                        llama, self._tokenize, self._scored, EVAL_BLOCK, self._eval_in_plan
                    )
        finally:
            self.reset_cache()

    def _eval_in_plan(self, tokens: Sequence[int], ends: tuple[int, ...]) -> None:
        """Evaluate `tokens` after the cached ones in the batches that `ends` gives."""
        self._plan = ends
        try:
            self._llama.eval(tokens)
        finally:
            self._plan = ()

    def reset_cache(self) -> None:
        """Forget the prompt cache: the next generation evaluates its whole prompt."""
        with self._lock:
            self._cached_tokens, self._cached_ends = [], ()

    # --------------------------------------------------------------- adapters

    @property
    def active_adapter(self) -> str | None:
        """The absolute path of the LoRA adapter applied now (None: no adapter)."""
        return self._adapters.active

    def use_adapter(self, path: str | None) -> None:
        """Apply the LoRA adapter GGUF at `path` (None: none) (backends.base.LoraAdapters).

        The KV cache and every prompt cache are forgotten when the adapter changes: their
        values were computed with other weights (adapters.py).
        """
        key = None if path is None else str(Path(path).expanduser().absolute())
        with self._lock:
            self._check_open()
            if key == self._adapters.active:
                return
            try:
                self._adapters.apply(self._llama, key, self._forget_evaluations)
            finally:
                if self._measurement is not None:
                    self._measurement.sync(self._active_adapter_pointer(), self._cvec)

    def _active_adapter_pointer(self) -> Any:
        active = self._adapters.active
        return None if active is None else self._adapters.loaded(active)

    def _forget_evaluations(self) -> None:
        """Empty the KV cache and every record of what it held (the lock is held)."""
        import llama_cpp

        llama = self._llama
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llama.ctx), True)
        llama.n_tokens = 0
        self._cached_tokens, self._cached_ends = [], ()
        self._scored.tokens = []

    # ----------------------------------------------------------------- close

    def _is_open(self) -> bool:
        return self._llama is not None

    @property
    def _model_name(self) -> str:
        return self._path.name

    @property
    def _larger_context(self) -> str:
        return f"n_ctx; it was trained on {self._n_ctx_train}"

    def close(self) -> None:
        """Free the model and its context; later calls raise GenerationError."""
        with self._lock:
            if self._llama is not None:
                if self._measurement is not None:
                    self._measurement.close()
                    self._measurement = None
                self._adapters.free(self._llama)
                self._llama.close()
                self._llama = None
