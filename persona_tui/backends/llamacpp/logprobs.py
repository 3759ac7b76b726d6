"""Next-token log-probabilities from llama.cpp without `logits_all=True` (`TokenLogprobs`).

llama-cpp-python's logprob path (`logits_all=True`) keeps logits for every prompt position
and runs several times slower. Here the prompt is evaluated once, reusing the KV cache of
the previous scored prompt, and only the last position's logits are read
(`llama_get_logits_ith(ctx, -1)`); continuations are then decoded one token at a time
from the cached prompt (`step`). The scorers that walk those continuations are in
scoring/logprobs.py; `LlamaCppBackend.logprob_scope` hands them a `LlamaLogprobScope`
under the backend's lock.

The prompt reuses the KV cache like the backend's generation does: only whole blocks of
`EVAL_BLOCK` positions of the previous scored prompt are kept, and the rest is evaluated
in block-aligned batches (the backend's `eval` plan), so the logits do not depend on what
was scored before (the CPU kernels round differently with the batch shape; see
batching.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from persona_tui.errors import PromptTooLongError


@dataclass
class ScoredPrompt:
    """The last prompt scored on one backend (kept on the backend): whole blocks of it
    may be reused by the next. Empty while an evaluation is unfinished."""

    tokens: list[int] = field(default_factory=list)


class LlamaLogprobScope:
    """Scoring inside one hold of the backend's lock (see backends.base.LogprobScope)."""

    def __init__(
        self,
        llama: Any,
        tokenize: Callable[[str], list[int]],
        previous: ScoredPrompt,
        block: int,
    ) -> None:
        self.llama = llama
        self._tokenize = tokenize
        self._previous = previous
        self._block = block
        self.n_vocab = int(llama.n_vocab())
        self.base = 0
        self._decodes = 0

    @property
    def decodes(self) -> int:
        return self._decodes

    def tokenize(self, text: str) -> list[int]:
        return self._tokenize(text)

    def continuation(self, prompt: str, prompt_tokens: Sequence[int], text: str) -> list[int]:
        """Tokens of `text` as the model would write it right after `prompt`."""
        full = self._tokenize(prompt + text)
        n = len(prompt_tokens)
        if full[:n] == list(prompt_tokens) and len(full) > n:
            return full[n:]
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def tokens_starting_with(self, first_bytes: bytes) -> Any:
        """A boolean mask of the vocabulary's tokens whose text starts with one of `first_bytes`."""
        import ctypes

        import llama_cpp
        import numpy as np

        llama = self.llama
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        mask = np.zeros(self.n_vocab, dtype=bool)
        size = 64
        buffer = ctypes.create_string_buffer(size)
        to_piece = llama_cpp.llama_token_to_piece
        for token in range(self.n_vocab):
            n = to_piece(vocab, token, buffer, size, 0, False)
            if n < 0:  # a piece longer than the buffer: grow it and ask again
                size = -n
                buffer = ctypes.create_string_buffer(size)
                n = to_piece(vocab, token, buffer, size, 0, False)
            mask[token] = n > 0 and buffer.raw[0] in first_bytes
        return mask

    def evaluate(self, prompt_tokens: Sequence[int]) -> Any:
        """Evaluate the prompt from the cached state; the logprobs after its last token."""
        previous = self._previous.tokens
        self._previous.tokens = []  # until this evaluation has finished
        self.base = len(prompt_tokens)
        self._decodes = 0
        n_ctx = int(self.llama.n_ctx())
        if self.base + 4 > n_ctx:
            raise PromptTooLongError(
                f"the judge prompt is {self.base} tokens, more than the judge model's context "
                f"of {n_ctx} tokens; use a judge with a larger context (n_ctx) or shorter "
                "responses"
            )
        self._eval_prompt(prompt_tokens, previous)
        self._previous.tokens = list(prompt_tokens)
        return self.logprobs()

    def _eval_prompt(self, tokens: Sequence[int], previous: Sequence[int]) -> None:
        import numpy as np

        llama = self.llama
        block = self._block
        cached = min(int(llama.n_tokens), len(previous), len(tokens))
        common = 0
        if cached:
            now = llama.input_ids[:cached]
            same = (now == np.asarray(tokens[:cached], dtype=np.intc)) & (
                now == np.asarray(previous[:cached], dtype=np.intc)
            )
            common = cached if bool(same.all()) else int(np.argmin(same))
        # Keep whole blocks only, and always evaluate the prompt's last block afresh.
        keep = min(common // block * block, (len(tokens) - 1) // block * block)
        llama.n_tokens = keep
        llama.eval(list(tokens[keep:]))

    def logprobs(self) -> Any:
        """log-softmax of the logits at the last evaluated position (float64 array)."""
        import llama_cpp
        import numpy as np

        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).astype(np.float64)
        top = logits.max()
        return logits - (top + math.log(float(np.exp(logits - top).sum())))

    def step(self, depth: int, token: int) -> Any:
        """Decode `token` at prompt + `depth` (dropping deeper cached tokens); its logprobs."""
        self.llama.n_tokens = self.base + depth
        self.llama.eval([token])
        self._decodes += 1
        return self.logprobs()
