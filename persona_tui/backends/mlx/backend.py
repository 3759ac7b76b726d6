"""MLX backend: a local MLX model folder run with mlx-lm (Apple Silicon GPU, or CPU elsewhere).

Behaves like the llama.cpp backend: streamed text, per-request seeds, the scenario's
sampling parameters, stop strings (mlx-lm has none), cancellation within a token, the
prompt-prefix cache reused across trials, and a `ModelInfo` for the session record.

It never contacts a model hub: the folder must exist with `config.json`, `model*.safetensors`
and tokenizer files, checked before mlx-lm sees the path (`backends.detect.check_mlx_folder`),
and the load runs with HF_HUB_OFFLINE=1.

`use_adapter` applies an mlx-lm LoRA adapter folder or none (backends.base.LoraAdapters;
see `adapters`: the LoRA layers are swapped in and out, the weights are not reloaded).
Hidden states and steering (backends.base.HiddenStates, Steering) are activations.py's,
through the layer hooks steering.py installs at load.

Tokens are turned into bytes as llama.cpp does (see `tokens`), not by mlx-lm's
streaming detokenizers. Bytes become text with an incremental UTF-8 decoder, so a
character split across byte tokens is emitted whole and invalid bytes become U+FFFD.

This module keeps loading, the chat template, one-by-one generation, scoring and
adapters; `generate_batch` is batch_runner.py's, the prompt cache prompt_cache.py's, the
sampler sampling.py's, the lock, closed check and prompt-size check backends/local.py's.
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
    chat_template_failed,
    check_n_ctx,
    emit,
    hub_offline,
    installed_version,
    is_cancelled,
    make_result,
    no_chat_template_error,
    stream_tokens,
)
from persona_tui.backends.detect import check_mlx_folder
from persona_tui.backends.local import engine_failures
from persona_tui.backends.mlx.activations import MlxResidualStream
from persona_tui.backends.mlx.adapters import AdapterSwitch, adapter_folder
from persona_tui.backends.mlx.batch_runner import MLX_ERRORS, MlxBatchRunner
from persona_tui.backends.mlx.folder import build_mlx_info, context_length, read_model_config
from persona_tui.backends.mlx.logprobs import MlxLogprobScope
from persona_tui.backends.mlx.prompt_cache import MlxPromptCache
from persona_tui.backends.mlx.sampling import mlx_sampling
from persona_tui.backends.mlx.steering import LayerHooks
from persona_tui.backends.mlx.tokens import (
    CompletionBytes,
    chat_end_token,
    end_of_turn_ids,
    token_byte_table,
)
from persona_tui.backends.stream import StopStringStream
from persona_tui.errors import ModelLoadError
from persona_tui.values import ModelInfo

MLX_INSTALL_HINT = "pip install 'persona-tui[mlx]'"
# The most sequences one generate_batch call takes (as llama.cpp's backend).
MAX_SEQUENCES = 64

# mx.random's state is process-wide, so generations on any MLX model must not overlap.
_GENERATION_LOCK = threading.Lock()


def default_max_batch(mx: Any) -> int:
    """How many sequences `generate_batch` takes unless told: MAX_SEQUENCES on a GPU, 1 on
    a CPU (measured in docs/benchmarks.md: on a Linux CPU, MLX's batched decoding is no
    faster than one sequence at a time, so the runner keeps decoding one by one)."""
    return MAX_SEQUENCES if mx.default_device() == mx.gpu else 1


class _Cancelled(Exception):
    """Raised from mlx-lm's prompt-progress callback to abandon a long prompt evaluation."""


class MlxBackend(MlxResidualStream, MlxBatchRunner):
    """A loaded MLX model folder; see the module docstring for what it guarantees."""

    def __init__(
        self,
        folder: Path,
        files: list[Path],
        config: dict[str, Any],
        *,
        n_ctx: int | None,
        max_batch: int | None = None,
    ) -> None:
        """Use `MlxBackend.load`; this loads the checked folder with mlx-lm."""
        try:
            import mlx.core as mx
            import mlx_lm
        except ImportError as error:
            raise ModelLoadError(
                f"the MLX backend needs mlx and mlx-lm ({error}); install them with: "
                f"{MLX_INSTALL_HINT}"
            ) from error
        try:
            with hub_offline():
                loaded = mlx_lm.load(str(folder))
            model, tokenizer = loaded[0], loaded[1]
        except Exception as error:  # mlx-lm raises plain ValueError/KeyError/OSError
            raise ModelLoadError(
                f"mlx-lm cannot load {folder}: {error}. The folder may be damaged, or its "
                f"architecture ({config.get('model_type', 'unknown')!r}) may be newer than "
                f"this mlx-lm {installed_version('mlx-lm')} (upgrade it)."
            ) from error
        self._mx = mx
        self._model: Any = model
        self._tokenizer = tokenizer
        self._hf = tokenizer._tokenizer  # the transformers tokenizer mlx-lm wraps
        self._folder = folder
        self._files = files
        self._config = config
        self._n_ctx = n_ctx or context_length(config)
        self._vocab_size = len(self._hf)
        self._byte_table = token_byte_table(folder, self._hf)
        self._end_ids = end_of_turn_ids(tokenizer.eos_token_ids, self._hf)
        self._prompts = MlxPromptCache()
        self._lock = _GENERATION_LOCK
        self._info = CachedModelInfo()
        self._closed = False
        self._max_batch = default_max_batch(mx) if max_batch is None else max_batch
        self._adapters = AdapterSwitch(model)
        self._hooks = LayerHooks.install(model)  # steering and hidden states (activations.py)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        n_ctx: int | None = None,
        max_batch: int | None = None,
    ) -> MlxBackend:
        """Load the MLX model folder at `path` (never a hub id).

        n_ctx None → the model's trained context (config.json max_position_embeddings);
        MLX picks its own threads: the engine declares no n_threads (backends/registry.py);
        max_batch None → `default_max_batch` (1 on a CPU, where batching does not pay).
        Raises ModelLoadError naming the folder and the problem.
        """
        folder = Path(path).expanduser().absolute()
        files = check_mlx_folder(folder)
        config = read_model_config(folder)
        check_n_ctx(n_ctx)
        if max_batch is not None and not 1 <= max_batch <= MAX_SEQUENCES:
            raise ModelLoadError(f"max_batch must be between 1 and {MAX_SEQUENCES}")
        return cls(folder, files, config, n_ctx=n_ctx, max_batch=max_batch)

    # ------------------------------------------------------------- model facts

    @property
    def path(self) -> Path:
        return self._folder

    @property
    def chat_template(self) -> str | None:
        """The tokenizer's chat template source, or None when it has none."""
        template = getattr(self._hf, "chat_template", None)
        if isinstance(template, dict):  # several named templates: the default one renders
            template = template.get("default")
        return template if isinstance(template, str) and template else None

    @property
    def has_chat_template(self) -> bool:
        return self.chat_template is not None

    @property
    def info(self) -> ModelInfo:
        """What a session records; the weights' sha256 is computed (and cached) on first use."""
        return self._info.get(self._build_info)

    def _build_info(self) -> ModelInfo:
        return build_mlx_info(
            self._folder,
            self._files,
            self._config,
            n_ctx=self._n_ctx,
            chat_template=self.chat_template,
            device=str(self._mx.default_device()),
            n_vocab=self._vocab_size,
            detokenizer="token bytes" if self._byte_table is not None else "re-decode",
        )

    @property
    def end_of_turn_token(self) -> int:
        """The token a chat turn ends with: the template's end-of-turn marker when the
        tokenizer has one (`<|im_end|>`, `<|eot_id|>` ...), else end-of-sequence."""
        return chat_end_token(self._hf, self._end_ids)

    # -------------------------------------------------------------------- text

    def _tokenize(self, text: str) -> list[int]:
        """Prompt tokens: BOS added unless the text already starts with it (no double BOS)."""
        bos = self._hf.bos_token
        add_special = bos is None or not text.startswith(bos)
        return list(self._hf.encode(text, add_special_tokens=add_special))

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """Render with the model's own chat template, ending with the assistant's turn."""
        if self.chat_template is None:
            raise no_chat_template_error(
                f"The MLX model {self._folder}", "tokenizer_config.json chat_template"
            )
        conversation = [{"role": m.role, "content": m.content} for m in messages]
        try:
            text = self._hf.apply_chat_template(
                conversation, tokenize=False, add_generation_prompt=True
            )
        except Exception as error:  # jinja2 errors, raise_exception() in templates
            raise chat_template_failed(self._folder.name, error) from error
        return str(text)

    # -------------------------------------------------------------- generation

    def generate(
        self,
        request: GenerationRequest,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Generate a continuation of `request.prompt` (see the Backend protocol).

        Like the llama.cpp backend: prompt tokens + max_tokens > n_ctx raises
        PromptTooLongError before anything is evaluated; `completion_tokens` counts sampled
        tokens, not the end-of-generation token; invalid UTF-8 becomes U+FFFD.
        """
        with self._lock:
            self._check_open()
            started = time.perf_counter()
            (tokens,) = self._prompt_tokens([request.prompt], request.sampling.max_tokens)
            try:
                with engine_failures(
                    lambda error: f"MLX failed while generating with {self._model_name}: {error}",
                    self._prompts.drop,
                    MLX_ERRORS,
                ):
                    return self._generate_locked(request, tokens, on_text, cancel, started)
            except _Cancelled:
                self._prompts.drop()  # an abandoned prompt evaluation leaves it half-written
                return cancelled_before_start(started, prompt_tokens=len(tokens))
            except BaseException:
                self._prompts.drop()  # e.g. an exception from on_text: keep the cache consistent
                raise

    def _generate_locked(
        self,
        request: GenerationRequest,
        tokens: list[int],
        on_text: TextCallback | None,
        cancel: threading.Event | None,
        started: float,
    ) -> GenerationResult:
        from mlx_lm.generate import generate_step

        if is_cancelled(cancel):
            return cancelled_before_start(started, prompt_tokens=len(tokens))
        reused = self._prompts.reuse(self._model, tokens)
        suffix = tokens[reused:]
        sampler, processors = mlx_sampling(
            self._mx, request.sampling, self._vocab_size, tokens[:reused]
        )

        def abandon_if_cancelled(_done: int, _total: int) -> None:
            if is_cancelled(cancel):
                raise _Cancelled  # stops a long prompt evaluation between chunks

        stream = StopStringStream(request.stop)
        pieces = CompletionBytes(self._byte_table, self._decode_completion)
        self._mx.random.seed(request.seed)
        steps = generate_step(
            self._mx.array(suffix),
            self._model,
            max_tokens=max(request.sampling.max_tokens, 0),
            sampler=sampler,
            logits_processors=processors,
            prompt_cache=self._prompts.cache,
            prompt_progress_callback=abandon_if_cancelled,
        )
        try:
            finish, completion_tokens = stream_tokens(
                (int(token) for token, _logprobs in steps),
                token_bytes=pieces.add,
                is_end=self._end_ids.__contains__,
                stream=stream,
                on_text=on_text,
                cancel=cancel,
            )
        finally:
            steps.close()
        if not stream.stopped:
            emit(on_text, stream.feed(pieces.finish()))
            finish = "stop" if stream.stopped else finish
        emit(on_text, stream.finish())
        self._prompts.keep_prompt(tokens)
        return make_result(
            stream.text,
            finish,
            prompt_tokens=len(tokens),
            completion_tokens=completion_tokens,
            evaluated=len(suffix),
            started=started,
        )

    def _decode_completion(self, ids: list[int]) -> str:
        return str(self._hf.decode(ids, skip_special_tokens=True))

    # ------------------------------------------------- batched (batch_runner.py)

    # --------------------------------------------------------------- logprobs

    @contextlib.contextmanager
    def logprob_scope(self) -> Iterator[LogprobScope]:
        """The model under the MLX lock, for scoring (backends.base.TokenLogprobs).

        Scoring uses its own prompt cache, so the generation cache is left as it was.
        """
        with self._lock:
            self._check_open()
            scope = MlxLogprobScope(
                self._model,
                self._tokenize,
                lambda text: list(self._hf.encode(text, add_special_tokens=False)),
                self._byte_table,
                lambda token: str(self._hf.decode([token])).encode("utf-8"),
                n_ctx=self._n_ctx,
                n_vocab=self._vocab_size,
            )
            with engine_failures(
                lambda error: f"MLX failed while scoring with {self._model_name}: {error}",
                lambda: None,
                MLX_ERRORS,
            ):
                yield scope

    # --------------------------------------------------------------- adapters

    @property
    def active_adapter(self) -> str | None:
        """The absolute path of the adapter folder applied now (None: no adapter)."""
        return self._adapters.active

    def use_adapter(self, path: str | None) -> None:
        """Apply the mlx-lm LoRA adapter folder at `path` (adapters.safetensors +
        adapter_config.json; one of those files names its folder), or none
        (backends.base.LoraAdapters). Each folder is read once; the prompt cache is
        forgotten when the adapter changes (the scoring scope keeps no cache between holds).
        """
        key = None if path is None else str(adapter_folder(Path(path)))
        with self._lock:
            self._check_open()
            if key == self._adapters.active:
                return
            try:
                self._adapters.use(key)
            finally:
                self._prompts.drop()  # computed with other weights, whatever happened

    # ------------------------------------------------------------ prefix cache

    def reset_cache(self) -> None:
        """Forget the prompt cache: the next generation evaluates its whole prompt."""
        with self._lock:
            self._prompts.drop()

    # ------------------------------------------------------------------ close

    def _is_open(self) -> bool:
        return not self._closed

    @property
    def _model_name(self) -> str:
        return self._folder.name

    @property
    def _larger_context(self) -> str:
        return "n_ctx in config.toml"

    def close(self) -> None:
        """Free the model and its cache; later calls raise GenerationError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._prompts.drop()
                self._adapters.clear()
                self._hooks.vectors = {}
                self._model = None
                self._mx.clear_cache()
