"""What the backends share: results, checks and errors worded alike, the token loop.

The llama.cpp, MLX and OpenAI-compatible backends keep the same promises (see the Backend
protocol); the pieces here keep them the same way in every backend, with the same
messages, so a user sees one behaviour whichever engine runs the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from persona_tui.backends.base import BatchDone, GenerationResult, TextCallback
from persona_tui.backends.stream import StopStringStream
from persona_tui.errors import GenerationError, ModelLoadError, PromptTooLongError
from persona_tui.values import FinishReason, ModelInfo

MIN_N_CTX = 16


# ------------------------------------------------------------------------- results


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` have in common."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def make_result(
    text: str,
    finish: FinishReason,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    evaluated: int,
    started: float,
) -> GenerationResult:
    """A GenerationResult whose `seconds` run from `started` (a `time.perf_counter()`)."""
    return GenerationResult(
        text=text,
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        prompt_tokens_evaluated=evaluated,
        seconds=time.perf_counter() - started,
    )


def cancelled_before_start(started: float, *, prompt_tokens: int) -> GenerationResult:
    """The result of a generation whose `cancel` was set before anything was evaluated."""
    return make_result(
        "",
        "cancelled",
        prompt_tokens=prompt_tokens,
        completion_tokens=0,
        evaluated=0,
        started=started,
    )


def is_cancelled(cancel: threading.Event | None) -> bool:
    """True once the caller has set `cancel` (None: the generation cannot be cancelled)."""
    return cancel is not None and cancel.is_set()


def emit(on_text: TextCallback | None, piece: str) -> None:
    """Pass a non-empty piece of text to the caller's callback, if there is one."""
    if piece and on_text is not None:
        on_text(piece)


def stream_tokens(
    tokens: Iterable[int],
    *,
    token_bytes: Callable[[int], bytes],
    is_end: Callable[[int], bool],
    stream: StopStringStream,
    on_text: TextCallback | None,
    cancel: threading.Event | None,
    max_tokens: int | None = None,
) -> tuple[FinishReason, int]:
    """Consume sampled tokens until an end token, a stop string, `max_tokens` or `cancel`.

    Each token's bytes go through `stream`, and the text it releases to `on_text`.
    Returns the finish reason and the number of sampled tokens (an end token is not
    counted). `max_tokens` None means the engine bounds the count itself; 0 or less
    means no token is drawn at all. `stream.finish()` is left to the caller.
    """
    if max_tokens is not None and max_tokens <= 0:
        return "length", 0
    count = 0
    for token in tokens:
        if is_cancelled(cancel):
            return "cancelled", count
        if is_end(token):
            return "stop", count
        count += 1
        emit(on_text, stream.feed(token_bytes(token)))
        if stream.stopped:
            return "stop", count
        if max_tokens is not None and count >= max_tokens:
            break
    return "length", count


# -------------------------------------------------------------------- model facts


class CachedModelInfo:
    """A ModelInfo built once, on first use (hashing the weights can take seconds).

    The builder is passed to `get` rather than kept, so a backend holding this object
    does not reference itself (it is freed as soon as it is dropped).
    """

    def __init__(self) -> None:
        self._info: ModelInfo | None = None
        self._lock = threading.Lock()

    def get(self, build: Callable[[], ModelInfo]) -> ModelInfo:
        """The cached ModelInfo, built with `build` by the first caller (thread-safe)."""
        with self._lock:
            if self._info is None:
                self._info = build()
            return self._info


def template_sha256(template: str | None) -> str | None:
    """The sha256 of a chat template's text (None when there is no template)."""
    return hashlib.sha256(template.encode("utf-8")).hexdigest() if template else None


def installed_version(distribution: str) -> str:
    """The installed version of a distribution (e.g. "mlx-lm"), or "unknown"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 (and TRANSFORMERS_OFFLINE=1) while loading: never a download
    (mlx-lm and transformers would fetch a path they take for a hub id)."""
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


# ------------------------------------------------------------------------- checks


def check_n_ctx(n_ctx: int | None) -> None:
    """Reject a context size asked for that no prompt could fit in."""
    if n_ctx is not None and n_ctx < MIN_N_CTX:
        raise ModelLoadError(f"Context size n_ctx={n_ctx} is too small (minimum {MIN_N_CTX}).")


def check_prompt_size(
    n_prompt: int, max_tokens: int, *, n_ctx: int, model_name: str, larger_context: str
) -> None:
    """Refuse an empty prompt, or one that leaves no room for `max_tokens` in `n_ctx`.

    Checked before anything is evaluated, so a response is never cut short by the
    context. `n_ctx` 0 means the context is unknown (no size check); `larger_context`
    says how to give this model a larger one.
    """
    if not n_prompt:
        raise GenerationError("The prompt is empty: there is nothing to continue.")
    if n_ctx and n_prompt + max_tokens > n_ctx:
        raise PromptTooLongError(
            f"The prompt is {n_prompt} tokens + max_tokens {max_tokens} = "
            f"{n_prompt + max_tokens}, more than the context of {n_ctx} tokens "
            f"({model_name}). Shorten the prompt (fewer demonstrations or turns), "
            f"lower max_tokens, or give the model a larger context ({larger_context})."
        )


def check_batch(requests: Sequence[Any], batch: int, most: int, too_many: str) -> None:
    """Refuse a batch (`GenerationRequest`s) whose requests differ in sampling or stop
    strings, or that decodes more than `most` at once (`too_many` says so, naming the
    limit), or fewer than one."""
    first = requests[0]
    if any(r.sampling != first.sampling or r.stop != first.stop for r in requests):
        raise GenerationError("a batch's requests must share sampling and stop strings")
    if not 1 <= batch <= most:
        raise GenerationError(f"{too_many}, not {batch}")


def cancelled_batch(prompts: Sequence[Sequence[int]], started: float) -> Iterator[BatchDone]:
    """A batch cancelled before anything was evaluated: one `BatchDone` per prompt."""
    for index, tokens in enumerate(prompts):
        yield BatchDone(index, cancelled_before_start(started, prompt_tokens=len(tokens)))


def check_open(is_open: bool, model_name: str) -> None:
    """Raise GenerationError when the model has been closed."""
    if not is_open:
        raise GenerationError(f"The model {model_name} has been closed.")


# --------------------------------------------------------------------- chat errors


def no_chat_template_error(model: str, where: str) -> ModelLoadError:
    """Chat mode asked of a model without a chat template (`where` names the missing key)."""
    return ModelLoadError(
        f"{model} has no chat template ({where}), so chat mode cannot be used; "
        "use prompt mode 'transcript' (or 'auto')."
    )


def chat_template_failed(model_name: str, error: Exception) -> GenerationError:
    """The model's chat template raised on some messages (jinja2 or raise_exception())."""
    return GenerationError(
        f"The chat template of {model_name} failed on these messages: {error}. "
        "Use prompt mode 'transcript' for this model."
    )


def log_softmax(logits: Any) -> Any:
    """float64 log-softmax of one row of logits (or of each row of a 2-D array)."""
    import numpy as np

    values = np.asarray(logits, dtype=np.float64)
    top = values.max(axis=-1, keepdims=True)
    return values - (top + np.log(np.exp(values - top).sum(axis=-1, keepdims=True)))


def continuation_tokens(
    tokenize: Callable[[str], list[int]],
    prompt: str,
    prompt_tokens: Sequence[int],
    text: str,
    encode_alone: Callable[[str], list[int]],
) -> list[int]:
    """The tokens of `text` as the model would write it right after `prompt`: the tail of
    the prompt+text tokens where they extend the prompt's, else `text` encoded alone."""
    full = tokenize(prompt + text)
    n = len(prompt_tokens)
    if full[:n] == list(prompt_tokens) and len(full) > n:
        return full[n:]
    return encode_alone(text)
