"""MLX backend: a local MLX model folder run with mlx-lm (Apple Silicon GPU, or CPU elsewhere).

Behaves like the llama.cpp backend: streamed text, per-request seeds, the scenario's
sampling parameters, stop strings (mlx-lm has none), cancellation within a token, the
prompt-prefix cache reused across trials, and a `ModelInfo` for the session record.

It never contacts a model hub: the folder must exist with `config.json`, `model*.safetensors`
and tokenizer files, checked before mlx-lm sees the path (mlx-lm downloads any path that
does not exist), and the load runs with HF_HUB_OFFLINE=1.

Tokens are turned into text here rather than by mlx-lm's streaming detokenizers, which
drop the first generated token's leading space and print control tokens as text; like
llama.cpp, the text keeps that space (it continues the prompt) and control tokens
contribute nothing. Bytes become text with an incremental UTF-8 decoder, so a character
split across byte tokens is emitted whole and invalid bytes become U+FFFD.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

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

MLX = "mlx"
MLX_INSTALL_HINT = "pip install 'persona-tui[mlx]'"
# Tokens llama.cpp also treats as the end of a turn when the tokenizer marks them special.
END_OF_TURN_TOKENS = frozenset(
    {
        "</s>",
        "<|endoftext|>",
        "<|end_of_text|>",
        "<|eot_id|>",
        "<|eom_id|>",
        "<|im_end|>",
        "<|end|>",
        "<end_of_turn>",
        "<|return|>",
        "<EOT>",
    }
)
# llama.cpp's default repeat-penalty window (llama-cpp-python's last_n_tokens_size).
REPEAT_PENALTY_WINDOW = 64
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")

# mx.random's state is process-wide, so generations on any MLX model must not overlap.
_GENERATION_LOCK = threading.Lock()


class _Cancelled(Exception):
    """Raised from mlx-lm's prompt-progress callback to abandon a long prompt evaluation."""


# --------------------------------------------------------------------------- the folder


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files mlx-lm loads from `folder` (`model*.safetensors`), sorted."""
    return sorted(folder.glob("model*.safetensors"))


def check_mlx_folder(path: Path) -> list[Path]:
    """Check that `path` is a complete local MLX model folder; return its weight files.

    Raises ModelLoadError naming what is missing, so a typo is never taken for a hub id.
    """
    if not path.exists():
        raise ModelLoadError(
            f"MLX model folder {path} does not exist (persona-tui never downloads models: "
            "download or convert the model first, then pass its local folder)"
        )
    if not path.is_dir():
        raise ModelLoadError(
            f"{path} is a file, but the MLX backend needs a model folder "
            "(config.json, model*.safetensors and tokenizer files)"
        )
    missing: list[str] = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    weights = weight_files(path)
    if not weights:
        missing.append("model*.safetensors weights")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json or tokenizer.model)")
    if missing:
        raise ModelLoadError(f"MLX model folder {path} is incomplete: missing {', '.join(missing)}")
    return weights


def read_model_config(folder: Path) -> dict[str, Any]:
    """The folder's config.json as a dict, with a clear error when it is broken."""
    file = folder / "config.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"cannot read {file}: {error}") from error
    except json.JSONDecodeError as error:
        raise ModelLoadError(
            f"{file}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"
        ) from error
    if not isinstance(data, dict):
        raise ModelLoadError(f"{file}: expected a JSON object")
    return data


def describe_quantization(config: dict[str, Any]) -> str:
    """A short description of the weights' format from config.json."""
    quant = config.get("quantization") or config.get("quantization_config")
    if isinstance(quant, dict):
        if "bits" in quant:
            mode = quant.get("mode", "affine")
            return f"{quant['bits']}-bit {mode}, group size {quant.get('group_size', '?')}"
        if "quant_method" in quant:
            return str(quant["quant_method"])
    dtype = config.get("torch_dtype") or config.get("dtype")
    return str(dtype) if dtype else ""


def _context_length(config: dict[str, Any]) -> int:
    for table in (config, config.get("text_config") or {}):
        value = table.get("max_position_embeddings") if isinstance(table, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return 0


def combined_sha256(files: Sequence[Path]) -> tuple[str, dict[str, str]]:
    """One digest for a model's weights, plus each file's own.

    A single file's digest is the file's own sha256 (what `sha256sum` prints); several
    files combine as the sha256 of their "name digest" lines in name order.
    """
    from persona_tui.models import sha256_file

    digests = {file.name: sha256_file(file) for file in files}
    if len(digests) == 1:
        return next(iter(digests.values())), digests
    lines = "".join(f"{name} {digest}\n" for name, digest in sorted(digests.items()))
    return hashlib.sha256(lines.encode()).hexdigest(), digests


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 (and TRANSFORMERS_OFFLINE=1) while loading: never a download."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# ------------------------------------------------------------------------ token → text


class _CompletionBytes:
    """Turns generated token ids into bytes, like llama.cpp's token_to_piece.

    With a per-token byte table (SentencePiece-style and byte-level BPE tokenizers) each
    token gives its own bytes; otherwise the whole completion is re-decoded and the bytes
    of the new suffix returned (slower, but right for any tokenizer).
    """

    def __init__(self, table: list[bytes] | None, decode: Callable[[list[int]], str]) -> None:
        self._table = table
        self._decode = decode
        self._ids: list[int] = []
        self._sent = ""

    def add(self, token: int) -> bytes:
        if self._table is not None:
            return self._table[token] if 0 <= token < len(self._table) else b""
        self._ids.append(token)
        text = self._decode(self._ids)
        if text.endswith("\ufffd") or not text.startswith(self._sent):
            return b""  # an incomplete character (or a re-spelling): wait for more tokens
        new, self._sent = text[len(self._sent) :], text
        return new.encode("utf-8")

    def finish(self) -> bytes:
        if self._table is not None or not self._ids:
            return b""
        text = self._decode(self._ids)
        new = text[len(self._sent) :] if text.startswith(self._sent) else ""
        self._sent = text
        return new.encode("utf-8")


_GPT2_BYTES: dict[str, int] | None = None


def _byte_level_map() -> dict[str, int]:
    """GPT-2's printable-character → byte map used by byte-level BPE vocabularies."""
    global _GPT2_BYTES
    if _GPT2_BYTES is None:
        printable = [
            *range(ord("!"), ord("~") + 1),
            *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1),
        ]
        chars = list(printable)
        extra = 0
        for byte in range(256):
            if byte not in printable:
                printable.append(byte)
                chars.append(256 + extra)
                extra += 1
        _GPT2_BYTES = {chr(c): b for b, c in zip(printable, chars, strict=True)}
    return _GPT2_BYTES


def _token_byte_table(folder: Path, hf_tokenizer: Any) -> list[bytes] | None:
    """Each token's bytes when the tokenizer's decoder is one we can mirror exactly."""
    try:
        spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    decoder = json.dumps(spec.get("decoder"))
    if '"ByteLevel"' in decoder:
        kind = "byte-level"
    elif '"ByteFallback"' in decoder or '"Metaspace"' in decoder or "\u2581" in decoder:
        kind = "sentencepiece"
    else:
        return None
    size = len(hf_tokenizer)
    pieces: list[str] = hf_tokenizer.convert_ids_to_tokens(list(range(size)))
    added = {int(t["id"]): t for t in spec.get("added_tokens", []) if isinstance(t, dict)}
    special = {i for i, t in added.items() if t.get("special")}
    special |= set(getattr(hf_tokenizer, "all_special_ids", []))
    byte_map = _byte_level_map()
    table: list[bytes] = []
    for token_id, piece in enumerate(pieces):
        if token_id in special or piece is None:
            table.append(b"")  # control tokens add no text (llama.cpp: special=False)
        elif token_id in added:  # user-defined tokens are their literal content
            table.append(str(added[token_id].get("content", piece)).encode("utf-8"))
        elif kind == "sentencepiece":
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                table.append(bytes([int(piece[3:5], 16)]))
            else:
                table.append(piece.replace("\u2581", " ").encode("utf-8"))
        elif all(char in byte_map for char in piece):
            table.append(bytes(byte_map[char] for char in piece))
        else:  # not byte-level after all: its text as is
            table.append(piece.encode("utf-8"))
    return table


# ----------------------------------------------------------------------------- backend


class MlxBackend:
    """A loaded MLX model folder; see the module docstring for what it guarantees."""

    def __init__(
        self, folder: Path, files: list[Path], config: dict[str, Any], *, n_ctx: int | None
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
            with _hub_offline():
                loaded = mlx_lm.load(str(folder))
            model, tokenizer = loaded[0], loaded[1]
        except Exception as error:  # mlx-lm raises plain ValueError/KeyError/OSError
            raise ModelLoadError(
                f"mlx-lm cannot load {folder}: {error}. The folder may be damaged, or its "
                f"architecture ({config.get('model_type', 'unknown')!r}) may be newer than "
                f"this mlx-lm {_version('mlx-lm')} (upgrade it)."
            ) from error
        self._mx = mx
        self._model: Any = model
        self._tokenizer = tokenizer
        self._hf = tokenizer._tokenizer  # the transformers tokenizer mlx-lm wraps
        self._folder = folder
        self._files = files
        self._config = config
        self._n_ctx = n_ctx or _context_length(config)
        self._vocab_size = len(self._hf)
        self._byte_table = _token_byte_table(folder, self._hf)
        self._end_ids = self._end_of_turn_ids()
        self._cache: list[Any] | None = None
        self._cached_tokens: list[int] = []
        self._lock = _GENERATION_LOCK
        self._info: ModelInfo | None = None
        self._info_lock = threading.Lock()
        self._closed = False

    @classmethod
    def load(
        cls, path: str | Path, *, n_ctx: int | None = None, n_threads: int | None = None
    ) -> MlxBackend:
        """Load the MLX model folder at `path` (never a hub id).

        n_ctx None → the model's trained context (config.json max_position_embeddings);
        n_threads is accepted for symmetry with llama.cpp and ignored (MLX picks its own).
        Raises ModelLoadError naming the folder and the problem.
        """
        folder = Path(path).expanduser().absolute()
        files = check_mlx_folder(folder)
        config = read_model_config(folder)
        if n_ctx is not None and n_ctx < 16:
            raise ModelLoadError(f"Context size n_ctx={n_ctx} is too small (minimum 16).")
        return cls(folder, files, config, n_ctx=n_ctx)

    # ------------------------------------------------------------- model facts

    @property
    def path(self) -> Path:
        return self._folder

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

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
        with self._info_lock:
            if self._info is None:
                self._info = self._build_info()
            return self._info

    def _build_info(self) -> ModelInfo:
        digest, per_file = combined_sha256(self._files)
        template = self.chat_template
        extra = {
            "mlx_version": _version("mlx"),
            "device": str(self._mx.default_device()),
            "weight_files": ", ".join(f"{name}:{sha}" for name, sha in per_file.items()),
            "n_vocab": str(self._vocab_size),
            "detokenizer": "token bytes" if self._byte_table is not None else "re-decode",
        }
        tokenizer_file = self._folder / "tokenizer.json"
        if tokenizer_file.is_file():
            extra["tokenizer_sha256"] = hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
        architectures = self._config.get("architectures")
        if isinstance(architectures, list):
            extra["architectures"] = ", ".join(str(a) for a in architectures)
        return ModelInfo(
            backend=MLX,
            backend_version=_version("mlx-lm"),
            path=str(self._folder),
            name=self._folder.name,
            sha256=digest,
            size_bytes=sum(file.stat().st_size for file in self._files),
            architecture=str(self._config.get("model_type", "")),
            quantization=describe_quantization(self._config),
            context_length=self._n_ctx,
            chat_template_sha256=(
                hashlib.sha256(template.encode("utf-8")).hexdigest() if template else None
            ),
            extra=extra,
        )

    def _end_of_turn_ids(self) -> frozenset[int]:
        """EOS ids plus special tokens that end a turn (as llama.cpp's end-of-generation set)."""
        ids = {int(i) for i in self._tokenizer.eos_token_ids}
        added = getattr(self._hf, "added_tokens_decoder", {})
        for token_id, token in added.items():
            if getattr(token, "special", False) and str(token) in END_OF_TURN_TOKENS:
                ids.add(int(token_id))
        return frozenset(ids)

    # -------------------------------------------------------------------- text

    def _tokenize(self, text: str) -> list[int]:
        """Prompt tokens: BOS added unless the text already starts with it (no double BOS)."""
        bos = self._hf.bos_token
        add_special = bos is None or not text.startswith(bos)
        return list(self._hf.encode(text, add_special_tokens=add_special))

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` is as a prompt (BOS included when the model adds one)."""
        with self._lock:
            self._check_open()
            return len(self._tokenize(text))

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """Render with the model's own chat template, ending with the assistant's turn."""
        if self.chat_template is None:
            raise ModelLoadError(
                f"The MLX model {self._folder} has no chat template (tokenizer_config.json "
                "chat_template), so chat mode cannot be used; use prompt mode 'transcript' "
                "(or 'auto')."
            )
        conversation = [{"role": m.role, "content": m.content} for m in messages]
        try:
            text = self._hf.apply_chat_template(
                conversation, tokenize=False, add_generation_prompt=True
            )
        except Exception as error:  # jinja2 errors, raise_exception() in templates
            raise GenerationError(
                f"The chat template of {self._folder.name} failed on these messages: {error}. "
                "Use prompt mode 'transcript' for this model."
            ) from error
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
            tokens = self._tokenize(request.prompt)
            if not tokens:
                raise GenerationError("The prompt is empty: there is nothing to continue.")
            self._check_fits(len(tokens), request.sampling.max_tokens)
            try:
                return self._generate_locked(request, tokens, on_text, cancel, started)
            except _Cancelled:
                self._drop_cache()  # an abandoned prompt evaluation leaves the cache half-written
                return _result("", "cancelled", tokens, 0, started, evaluated=0)
            except (RuntimeError, ValueError, OSError, MemoryError) as error:
                self._drop_cache()
                raise GenerationError(
                    f"MLX failed while generating with {self._folder.name}: {error}"
                ) from error
            except BaseException:
                self._drop_cache()  # e.g. an exception from on_text: keep the cache consistent
                raise

    def _check_fits(self, n_prompt: int, max_tokens: int) -> None:
        if self._n_ctx and n_prompt + max_tokens > self._n_ctx:
            raise PromptTooLongError(
                f"The prompt is {n_prompt} tokens + max_tokens {max_tokens} = "
                f"{n_prompt + max_tokens}, more than the context of {self._n_ctx} tokens "
                f"({self._folder.name}). Shorten the prompt (fewer demonstrations or turns), "
                "lower max_tokens, or give the model a larger context (n_ctx in config.toml)."
            )

    def _generate_locked(
        self,
        request: GenerationRequest,
        tokens: list[int],
        on_text: TextCallback | None,
        cancel: threading.Event | None,
        started: float,
    ) -> GenerationResult:
        from mlx_lm.generate import generate_step

        if cancel is not None and cancel.is_set():
            return _result("", "cancelled", tokens, 0, started, evaluated=0)
        reused = self._reuse_cache(tokens)
        suffix = tokens[reused:]
        sampler, processors = self._sampling(request, tokens[:reused])

        def abandon_if_cancelled(_done: int, _total: int) -> None:
            if cancel is not None and cancel.is_set():
                raise _Cancelled  # stops a long prompt evaluation between chunks

        stream = StopStringStream(request.stop)
        pieces = _CompletionBytes(self._byte_table, self._decode_completion)
        finish: FinishReason = "length"
        completion_tokens = 0
        self._mx.random.seed(request.seed)
        steps = generate_step(
            self._mx.array(suffix),
            self._model,
            max_tokens=max(request.sampling.max_tokens, 0),
            sampler=sampler,
            logits_processors=processors,
            prompt_cache=self._cache,
            prompt_progress_callback=abandon_if_cancelled,
        )
        try:
            for token, _logprobs in steps:
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if token in self._end_ids:
                    finish = "stop"
                    break
                completion_tokens += 1
                piece = stream.feed(pieces.add(int(token)))
                if piece and on_text is not None:
                    on_text(piece)
                if stream.stopped:
                    finish = "stop"
                    break
        finally:
            steps.close()
        if not stream.stopped:
            piece = stream.feed(pieces.finish())
            if piece and on_text is not None:
                on_text(piece)
            finish = "stop" if stream.stopped else finish
        tail = stream.finish()
        if tail and on_text is not None:
            on_text(tail)
        self._keep_prompt_in_cache(tokens)
        return _result(stream.text, finish, tokens, completion_tokens, started, len(suffix))

    def _decode_completion(self, ids: list[int]) -> str:
        return str(self._hf.decode(ids, skip_special_tokens=True))

    def _sampling(
        self, request: GenerationRequest, cached_prefix: list[int]
    ) -> tuple[Any, list[Any]]:
        """mlx-lm's sampler and logits processors for the request's sampling parameters."""
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        params = request.sampling
        top_k = params.top_k if 0 < params.top_k < self._vocab_size else 0
        sampler = make_sampler(
            temp=max(params.temperature, 0.0),
            top_p=params.top_p,
            min_p=params.min_p,
            top_k=top_k,
        )
        if params.repeat_penalty == 1.0 or params.repeat_penalty <= 0:
            return sampler, []
        (penalty,) = make_logits_processors(
            repetition_penalty=params.repeat_penalty,
            repetition_context_size=REPEAT_PENALTY_WINDOW,
        )
        # mlx-lm shows processors only the tokens it evaluated itself; as in llama.cpp, the
        # penalty window also covers the part of the prompt that came from the cache.
        mx = self._mx
        window = mx.array(cached_prefix[-REPEAT_PENALTY_WINDOW:], dtype=mx.uint32)

        def penalise_with_cached_prefix(seen: Any, logits: Any) -> Any:
            if window.size:
                seen = mx.concatenate([window, seen.astype(mx.uint32)])
            return penalty(seen, logits)

        return sampler, [penalise_with_cached_prefix]

    # ------------------------------------------------------------ prefix cache

    def _reuse_cache(self, tokens: list[int]) -> int:
        """Trim the cache to the longest prefix it shares with `tokens`; return its length.

        The prompt's last token is always evaluated (it yields the first logits). A cache
        that cannot be trimmed (e.g. a sliding window that wrapped) is rebuilt.
        """
        from mlx_lm.models.cache import (
            can_trim_prompt_cache,
            make_prompt_cache,
            trim_prompt_cache,
        )

        shared = 0
        limit = min(len(self._cached_tokens), len(tokens) - 1)
        while shared < limit and self._cached_tokens[shared] == tokens[shared]:
            shared += 1
        if self._cache is not None and shared and can_trim_prompt_cache(self._cache):
            trim_prompt_cache(self._cache, len(self._cached_tokens) - shared)
            self._cached_tokens = self._cached_tokens[:shared]
            return shared
        self._cache = make_prompt_cache(self._model)
        self._cached_tokens = []
        return 0

    def _keep_prompt_in_cache(self, tokens: list[int]) -> None:
        """After a generation keep exactly the prompt in the cache (drop generated tokens)."""
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        cache = self._cache
        if not cache or not can_trim_prompt_cache(cache):
            self._drop_cache()
            return
        extra = int(cache[0].offset) - len(tokens)
        if extra < 0:
            self._drop_cache()
            return
        trim_prompt_cache(cache, extra)
        self._cached_tokens = list(tokens)

    def _drop_cache(self) -> None:
        self._cache = None
        self._cached_tokens = []

    # ------------------------------------------------------------------ close

    def _check_open(self) -> None:
        if self._closed:
            raise GenerationError(f"The model {self._folder.name} has been closed.")

    def close(self) -> None:
        """Free the model and its cache; later calls raise GenerationError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._drop_cache()
                self._model = None
                self._mx.clear_cache()


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def _result(
    text: str,
    finish: FinishReason,
    tokens: list[int],
    completion_tokens: int,
    started: float,
    evaluated: int,
) -> GenerationResult:
    return GenerationResult(
        text=text,
        finish_reason=finish,
        prompt_tokens=len(tokens),
        completion_tokens=completion_tokens,
        prompt_tokens_evaluated=evaluated,
        seconds=time.perf_counter() - started,
    )
