"""What every engine that runs a model in this process does the same way, written once.

The llama.cpp and MLX backends both hold their model under a lock (one thread at a time),
refuse every call once closed, tokenize prompts with the model's own tokenizer, refuse a
prompt that leaves no room for `max_tokens` before evaluating anything, and turn an
engine's own exceptions into one-line GenerationErrors. `LocalBackend` keeps those
promises; an engine supplies its tokenizer, whether it is open, its names for messages,
and what to undo after a failure.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

from persona_tui.backends.common import check_open, check_prompt_size
from persona_tui.errors import GenerationError

# The exceptions an engine raises when a decode fails (its own errors are plain ones).
ENGINE_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, ValueError, OSError)


class LocalBackend:
    """The shared half of a local engine's backend (see the module docstring).

    Subclasses set `_lock` and `_n_ctx` in their constructor and define `_tokenize`,
    `_is_open`, `_model_name` (the file or folder name messages give) and
    `_larger_context` (how to give this model a larger context).
    """

    _lock: threading.Lock
    _n_ctx: int

    def _tokenize(self, text: str) -> list[int]:
        """The tokens the model sees for the prompt `text` (the lock is held)."""
        raise NotImplementedError

    def _is_open(self) -> bool:
        raise NotImplementedError

    @property
    def _model_name(self) -> str:
        raise NotImplementedError

    @property
    def _larger_context(self) -> str:
        raise NotImplementedError

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def _check_open(self) -> None:
        """Raise GenerationError when the model has been closed."""
        check_open(self._is_open(), self._model_name)

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` is as a prompt (BOS included when the model adds one)."""
        with self._lock:
            self._check_open()
            return len(self._tokenize(text))

    def _prompt_tokens(self, prompts: Sequence[str], max_tokens: int) -> list[list[int]]:
        """Tokenize `prompts` (the lock is held), refusing any that leaves no room for
        `max_tokens` in the context (PromptTooLongError, before anything is evaluated)."""
        tokenized = []
        for prompt in prompts:
            tokens = self._tokenize(prompt)
            check_prompt_size(
                len(tokens),
                max_tokens,
                n_ctx=self._n_ctx,
                model_name=self._model_name,
                larger_context=self._larger_context,
            )
            tokenized.append(tokens)
        return tokenized


@contextlib.contextmanager
def engine_failures(
    message: Callable[[BaseException], str],
    recover: Callable[[], None],
    errors: tuple[type[BaseException], ...] = ENGINE_ERRORS,
) -> Iterator[None]:
    """Turn the engine's `errors` raised inside into GenerationError(`message(error)`),
    after `recover()` (e.g. forgetting a cache a failed decode left inconsistent)."""
    try:
        yield
    except errors as error:
        recover()
        raise GenerationError(message(error)) from error
