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
- `generate_batch` decodes up to MAX_SEQUENCES sequences together (batched.py).
- `use_adapter` applies one LoRA adapter GGUF or none; each file is loaded once, checked
  first (a bad file raises ModelLoadError naming it), and switching forgets every cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from persona_tui._util.hashing import sha256_file
from persona_tui.backend_names import LLAMA_CPP
from persona_tui.backends.base import (
    BatchEvent,
    ChatMessage,
    GenerationRequest,
    GenerationResult,
    LogprobScope,
    TextCallback,
)
from persona_tui.backends.common import (
    CachedModelInfo,
    cancelled_batch,
    cancelled_before_start,
    chat_template_failed,
    check_batch,
    check_n_ctx,
    check_open,
    check_prompt_size,
    emit,
    is_cancelled,
    make_result,
    no_chat_template_error,
    stream_tokens,
    template_sha256,
)
from persona_tui.backends.cpu_load import ThreadGovernor
from persona_tui.backends.gguf_file import GGUFHeader, read_gguf_header
from persona_tui.backends.llamacpp.batched import (
    Decoding,
    GroupPlan,
    decode_group,
    group_width,
    shared_end,
)
from persona_tui.backends.llamacpp.batching import batch_ends, reusable_prefix, split_points
from persona_tui.backends.llamacpp.load import (
    MAX_SEQUENCES,
    LoadedLlama,
    construct_llama,
    default_n_threads,
    init_lora_adapter,
    llama_cpp_version,
)
from persona_tui.backends.llamacpp.logprobs import LlamaLogprobScope, ScoredPrompt
from persona_tui.backends.llamacpp.sampling import sample_tokens
from persona_tui.backends.stream import StopStringStream
from persona_tui.errors import GenerationError, ModelLoadError, PromptTooLongError
from persona_tui.values import ModelInfo

DEFAULT_MAX_CONTEXT = 4096
# Prompt tokens are evaluated in batches of at most this many positions, planned so that
# reusing the KV cache never changes a result: see persona_tui/backends/llamacpp/batching.py.
EVAL_BLOCK = 128


class LlamaCppBackend:
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
        self._formatter: Any = None
        model = llama._model
        self._bos = model.token_bos()
        self._eos = model.token_eos()
        self._add_bos = bool(model.add_bos_token())
        self._n_vocab = int(model.n_vocab())
        self._n_ctx_train = int(model.n_ctx_train())
        self._vocab = model.vocab
        self._piece_buffer = ctypes.create_string_buffer(64)
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
        # LoRA adapters loaded so far (absolute path -> llama_adapter_lora pointer) and the
        # one applied now (None: the untouched weights).
        self._adapters: dict[str, Any] = {}
        self._active_adapter: str | None = None
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

    # ---------------------------------------------------------- model facts

    @property
    def path(self) -> Path:
        return self._path

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

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

        header = self._header
        extra = {
            "n_ctx_train": str(self._n_ctx_train),
            "n_threads": str(self._n_threads),
            "threads_policy": "fixed"
            if self._governor is None
            else "free cores, at most n_threads",
            "n_vocab": str(self._n_vocab),
            "add_bos": str(self._add_bos).lower(),
            "gguf_version": str(header.version),
            "tensors": str(len(header.tensors)),
            # Results depend on how prompts are batched (see batching.py): record the plan.
            "eval_block": str(EVAL_BLOCK),
            # Repacked weights run other kernels (see load.choose_repack).
            "repack": "on" if self._loaded.repack.enabled else "off",
            "repack_setting": self._loaded.repack.setting,
            "repack_reason": self._loaded.repack.reason,
            "weight_buffers": ",".join(self._loaded.weight_buffers),
            "system_info": self._loaded.system_info.strip(),
        }
        file_type = header.get_int("general.file_type")
        if file_type is not None:
            extra["file_type"] = str(file_type)
        size_label = header.get_str("general.size_label")
        if size_label:
            extra["size_label"] = size_label
        return ModelInfo(
            backend=LLAMA_CPP,
            backend_version=self._version,
            path=str(self._path),
            name=header.get_str("general.name") or self._path.stem,
            sha256=sha256_file(self._path),
            size_bytes=header.file_size,
            architecture=header.architecture,
            quantization=header.quantization,
            context_length=self._n_ctx,
            chat_template_sha256=template_sha256(header.chat_template),
            extra=extra,
        )

    # ---------------------------------------------------------------- chat

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """Render with the GGUF's own chat template, ending with the assistant's turn."""
        template = self._header.chat_template
        if template is None:
            raise no_chat_template_error(f"The model {self._path}", "tokenizer.chat_template")
        with self._lock:
            self._check_open()
            try:
                if self._formatter is None:
                    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                    model = self._llama._model
                    self._formatter = Jinja2ChatFormatter(
                        template=template,
                        bos_token=model.token_get_text(self._bos) if self._bos >= 0 else "",
                        eos_token=model.token_get_text(self._eos) if self._eos >= 0 else "",
                        add_generation_prompt=True,
                    )
                dicts = [{"role": m.role, "content": m.content} for m in messages]
                return str(self._formatter(messages=dicts).prompt)
            except Exception as exc:  # jinja2 syntax errors, raise_exception() in templates
                raise chat_template_failed(self._path.name, exc) from exc

    # ------------------------------------------------------------ tokens

    def count_tokens(self, text: str) -> int:
        with self._lock:
            self._check_open()
            return len(self._tokenize(text))

    def _tokenize(self, text: str) -> list[int]:
        """Tokens the model sees for `text`: BOS per the model, special tokens parsed.

        Prompts rendered from chat templates often start with the BOS token as text;
        that would give a double BOS, so one is dropped.
        """
        tokens: list[int] = self._llama.tokenize(
            text.encode("utf-8"), add_bos=self._add_bos, special=True
        )
        if self._add_bos and len(tokens) >= 2 and tokens[0] == tokens[1] == self._bos:
            tokens = tokens[1:]
        return tokens

    def _piece(self, token: int) -> bytes:
        import llama_cpp

        buffer = self._piece_buffer
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        if n < 0:
            self._piece_buffer = buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n]

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
            if self._governor is not None:
                self._use_threads(self._governor.threads())
            # The KV cache will hold this prompt along the generation's batch plan; a later
            # scoring must not reuse it as if it were its own (see logprobs.py).
            self._scored.tokens = []
            started = time.perf_counter()
            tokens = self._tokenize(request.prompt)
            check_prompt_size(
                len(tokens),
                request.sampling.max_tokens,
                n_ctx=self._n_ctx,
                model_name=self._path.name,
                larger_context=f"n_ctx; it was trained on {self._n_ctx_train}",
            )
            try:
                return self._generate_locked(request, tokens, on_text, cancel, started)
            except PromptTooLongError:
                raise
            except (RuntimeError, ValueError, OSError) as exc:
                # The KV cache may be inconsistent after a failed decode: start afresh.
                self._llama.reset()
                raise GenerationError(f"llama.cpp failed while generating: {exc}") from exc

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

    # ------------------------------------------------------- batched generation

    @property
    def max_batch(self) -> int:
        """MAX_SEQUENCES, or fewer in a context too small for them (see load.py)."""
        return max(1, int(self._llama.context_params.n_seq_max) - 2)

    def generate_batch(
        self,
        requests: Sequence[GenerationRequest],
        cancel: threading.Event | None = None,
        width: int | None = None,
    ) -> Generator[BatchEvent, None, None]:
        """Decode one sequence per request, `width` at a time (see
        backends.base.BatchedGeneration and batched.py's `decode_group`).

        The part of the prompts all requests share is evaluated once, in sequence 0 and
        along the batch plan `generate` uses (so it reuses the KV cache exactly as
        `generate` does, up to a batch end of that plan); afterwards it stays cached for
        the next call.
        """
        requests = list(requests)
        if not requests:
            return
        first = requests[0]
        width = len(requests) if width is None else width
        check_batch(
            requests,
            width,
            MAX_SEQUENCES,
            f"a batch decodes 1 to {MAX_SEQUENCES} sequences at once",
        )
        with self._lock:
            self._check_open()
            if self._governor is not None:
                self._use_threads(self._governor.threads())
            self._scored.tokens = []  # the KV cache is about to change (see logprob_scope)
            started = time.perf_counter()
            prompts = [self._tokenize(r.prompt) for r in requests]
            for tokens in prompts:
                check_prompt_size(
                    len(tokens),
                    first.sampling.max_tokens,
                    n_ctx=self._n_ctx,
                    model_name=self._path.name,
                    larger_context=f"n_ctx; it was trained on {self._n_ctx_train}",
                )
            if is_cancelled(cancel):
                yield from cancelled_batch(prompts, started)
                return
            split = self._framing_tokens(first, prompts[0])
            try:
                yield from self._batch_locked(requests, prompts, split, width, cancel)
            except (RuntimeError, ValueError, OSError) as exc:
                self._llama.reset()
                self._cached_tokens, self._cached_ends = [], ()
                raise GenerationError(f"llama.cpp failed while generating: {exc}") from exc

    def _batch_locked(
        self,
        requests: list[GenerationRequest],
        prompts: list[list[int]],
        split: int,
        width: int,
        cancel: threading.Event | None,
    ) -> Generator[BatchEvent, None, None]:
        """Evaluate the shared part of the prompts in sequence 0, then decode the group."""
        import llama_cpp

        started = time.perf_counter()
        ends = batch_ends(len(prompts[0]), EVAL_BLOCK, split)
        shared = shared_end(prompts)
        sampling = requests[0].sampling
        width, hold = group_width(prompts, shared, width, sampling.max_tokens, self._n_ctx)
        llama = self._llama
        memory = llama_cpp.llama_get_memory(llama.ctx)
        head = prompts[0][:shared]
        cached = min(int(llama.n_tokens), len(self._cached_tokens))
        keep = min(
            reusable_prefix(self._cached_tokens[:cached], self._cached_ends, prompts[0], ends),
            shared,
        )
        self._cached_tokens, self._cached_ends = [], ()  # until the batch is cleaned up
        try:
            llama.n_tokens = keep
            self._plan = ends
            try:
                llama.eval(head[keep:])  # removes every cell from `keep` on, then evaluates
            finally:
                self._plan = ()
            engine = Decoding(llama, self._piece, self._is_end)
            seeds = [r.seed for r in requests]
            plan = GroupPlan(prompts, seeds, shared, width, hold, sampling, requests[0].stop)
            yield from decode_group(engine, plan, cancel, started, shared - keep)
        finally:
            # Keep the shared prompt in sequence 0 for the next call; the group dropped
            # its own sequences.
            llama_cpp.llama_memory_seq_rm(memory, 0, shared, -1)
            llama.n_tokens = shared
            self._cached_tokens = head
            self._cached_ends = tuple(end for end in ends if end <= shared)

    def _is_end(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

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

    def _framing_tokens(self, request: GenerationRequest, tokens: Sequence[int]) -> int:
        """How many leading tokens lie within the request's shared framing text."""
        if request.framing_chars <= 0:
            return 0
        budget = len(request.prompt[: request.framing_chars].encode("utf-8"))
        used = 0
        for index, token in enumerate(tokens):
            used += len(self._piece(token))
            if used > budget:
                return index
        return len(tokens)

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
                try:
                    yield LlamaLogprobScope(
                        llama, self._tokenize, self._scored, EVAL_BLOCK, self._eval_in_plan
                    )
                except (RuntimeError, ValueError, OSError) as error:
                    llama.reset()
                    raise GenerationError(f"llama.cpp failed while judging: {error}") from error
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
        return self._active_adapter

    def use_adapter(self, path: str | None) -> None:
        """Apply the LoRA adapter GGUF at `path` (None: none) (backends.base.LoraAdapters).

        The KV cache and every prompt cache are forgotten when the adapter changes: their
        values were computed with other weights.
        """
        import llama_cpp

        key = None if path is None else str(Path(path).expanduser().absolute())
        with self._lock:
            self._check_open()
            if key == self._active_adapter:
                return
            ctx = self._llama.ctx
            if key is None:
                code = llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
            else:
                adapter = self._adapters.get(key) or self._load_adapter(Path(key))
                adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
                scales = (ctypes.c_float * 1)(1.0)
                code = llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales)
            # Whatever happened, nothing cached may be reused.
            self._forget_evaluations()
            if code != 0:
                self._active_adapter = None
                llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
                raise ModelLoadError(
                    f"llama.cpp could not apply the LoRA adapter {key} to {self._path.name} "
                    f"(code {code})"
                )
            self._active_adapter = key

    def _forget_evaluations(self) -> None:
        """Empty the KV cache and every record of what it held (the lock is held)."""
        import llama_cpp

        llama = self._llama
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llama.ctx), True)
        llama.n_tokens = 0
        self._cached_tokens, self._cached_ends = [], ()
        self._scored.tokens = []

    def _load_adapter(self, path: Path) -> Any:
        """Check and load the adapter file at `path` once (the lock is held)."""
        try:
            header = read_gguf_header(path)
        except ModelLoadError as error:
            raise ModelLoadError(f"LoRA adapter {path}: {error}") from None
        kind = (header.get_str("general.type"), header.get_str("adapter.type"))
        if kind != ("adapter", "lora"):
            raise ModelLoadError(
                f"{path} is not a LoRA adapter GGUF (general.type = {kind[0]!r}, adapter.type "
                f"= {kind[1]!r}); give the adapter.gguf that `persona-tui train` wrote"
            )
        if header.architecture != self._header.architecture:
            raise ModelLoadError(
                f"the LoRA adapter {path} is for a {header.architecture!r} model, but "
                f"{self._path.name} is {self._header.architecture!r}; train it on this model"
            )
        adapter, said = init_lora_adapter(self._llama, path)
        if not adapter:
            raise ModelLoadError(
                f"llama.cpp could not load the LoRA adapter {path} onto {self._path.name}"
                f"{f' ({said})' if said else ''}: it was probably trained on another base "
                "model (its tensors do not match); train it on this model"
            )
        self._adapters[str(path)] = adapter
        return adapter

    # ----------------------------------------------------------------- close

    def _check_open(self) -> None:
        check_open(self._llama is not None, self._path.name)

    def close(self) -> None:
        """Free the model and its context; later calls raise GenerationError."""
        with self._lock:
            if self._llama is not None:
                import llama_cpp

                if self._adapters:
                    llama_cpp.llama_set_adapters_lora(self._llama.ctx, None, 0, None)
                for adapter in self._adapters.values():
                    llama_cpp.llama_adapter_lora_free(adapter)
                self._adapters.clear()
                self._active_adapter = None
                self._llama.close()
                self._llama = None
