"""Next-token log-probabilities from an MLX model (`TokenLogprobs`), for the scorers.

`evaluate` runs the prompt through the model into a fresh prompt cache, in chunks whose
sizes depend on the prompt alone, and reads the last position's logits; `step` decodes one
token from the cached prompt (trimming deeper decodes), and `sequences` runs each
continuation (an answer option) in one forward pass after the prompt, reads the rows it
needs and trims the cache back to the prompt (a cache that cannot be trimmed, a sliding
window the prompt wrapped, is rebuilt from the prompt). A fresh cache per prompt means a
value never depends on what was scored or generated before. Log-softmax is taken in
float64 with numpy, as for llama.cpp.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from persona_tui.backends.common import continuation_tokens, log_softmax
from persona_tui.errors import GenerationError, PromptTooLongError

# Prompt positions evaluated per forward pass (a fixed tiling: results depend on the prompt only).
PROMPT_CHUNK = 512


class MlxLogprobScope:
    """Scoring inside one hold of the MLX backend's lock (see backends.base.LogprobScope)."""

    def __init__(
        self,
        model: Any,
        tokenize: Callable[[str], list[int]],
        encode_plain: Callable[[str], list[int]],
        byte_table: list[bytes] | None,
        decode_one: Callable[[int], bytes],
        n_ctx: int,
        n_vocab: int,
    ) -> None:
        self._model = model
        self._tokenize = tokenize
        self._encode_plain = encode_plain
        self._byte_table = byte_table
        self._decode_one = decode_one
        self._n_ctx = n_ctx
        self.n_vocab = n_vocab
        self._cache: list[Any] | None = None
        self._tokens: list[int] = []  # the tokens in the cache
        self.base = 0
        self._depth = 0  # tokens decoded after the prompt now in the cache
        self._decodes = 0
        self._prompt_row: Any = None

    @property
    def decodes(self) -> int:
        return self._decodes

    def tokenize(self, text: str) -> list[int]:
        return self._tokenize(text)

    def continuation(self, prompt: str, prompt_tokens: Sequence[int], text: str) -> list[int]:
        """Tokens of `text` as the model would write it right after `prompt`."""
        return continuation_tokens(self._tokenize, prompt, prompt_tokens, text, self._encode_plain)

    def tokens_starting_with(self, first_bytes: bytes) -> Any:
        """A boolean mask of the vocabulary's tokens whose text starts with one of `first_bytes`."""
        import numpy as np

        mask = np.zeros(self.n_vocab, dtype=bool)
        for token in range(self.n_vocab):
            piece = self._byte_table[token] if self._byte_table is not None else None
            if piece is None:
                piece = self._decode_one(token)
            mask[token] = bool(piece) and piece[0] in first_bytes
        return mask

    def _forward(self, tokens: Sequence[int]) -> Any:
        """Run `tokens` after what the cache holds; the logits of every position (L, V)."""
        import mlx.core as mx

        logits = self._model(mx.array([list(tokens)]), cache=self._cache)
        logits = logits[0].astype(mx.float32)
        mx.eval(logits)
        self._tokens.extend(tokens)
        return logits

    def _trim_to(self, position: int) -> None:
        """Keep the cache's first `position` tokens; a cache that cannot be trimmed (a
        sliding window the prompt wrapped) is rebuilt: the prompt evaluated again in the
        same chunks, then the decoded tokens kept."""
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        cache = self._cache
        if cache is None:
            raise GenerationError("MLX scoring lost its prompt cache")
        extra = int(cache[0].offset) - position
        if extra > 0 and can_trim_prompt_cache(cache):
            trim_prompt_cache(cache, extra)
            del self._tokens[position:]
        elif extra > 0:
            self._rebuild(self._tokens[:position])
        self._depth = position - self.base

    def _rebuild(self, tokens: list[int]) -> None:
        from mlx_lm.models.cache import make_prompt_cache

        self._cache = make_prompt_cache(self._model)
        self._tokens = []
        for start in range(0, self.base, PROMPT_CHUNK):
            self._forward(tokens[start : min(start + PROMPT_CHUNK, self.base)])
        if len(tokens) > self.base:
            self._forward(tokens[self.base :])

    def evaluate(self, prompt_tokens: Sequence[int], split: int = 0) -> Any:
        """Evaluate the prompt into a fresh cache; the logprobs after its last token.

        `split` is accepted for the protocol and not used: every prompt is evaluated
        whole here, so nothing scored before can change its values."""
        import numpy as np
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache

        tokens = list(prompt_tokens)
        self.base = len(tokens)
        self._decodes = 0
        self._depth = 0
        self._prompt_row = None
        if not tokens:
            raise GenerationError("cannot score after an empty prompt")
        if self.base + 4 > self._n_ctx:
            raise PromptTooLongError(
                f"the prompt is {self.base} tokens, more than the model's context of "
                f"{self._n_ctx} tokens; use a model with a larger context (n_ctx) or a "
                "shorter prompt"
            )
        self._cache = make_prompt_cache(self._model)
        self._tokens = []
        if not can_trim_prompt_cache(self._cache):
            raise GenerationError("this MLX model's cache cannot be trimmed, so it cannot score")
        logits = None
        for start in range(0, len(tokens), PROMPT_CHUNK):
            logits = self._forward(tokens[start : start + PROMPT_CHUNK])
        assert logits is not None
        self._prompt_row = log_softmax(np.array(logits[-1]))
        return self._prompt_row

    def step(self, depth: int, token: int) -> Any:
        """Decode `token` at prompt + `depth` (dropping deeper cached tokens); its logprobs."""
        import numpy as np

        if self._prompt_row is None:
            raise GenerationError("step() needs a prompt: call evaluate() first")
        self._trim_to(self.base + depth)
        logits = self._forward([token])
        self._depth = depth + 1
        self._decodes += 1
        return log_softmax(np.array(logits[-1]))

    def sequences(self, continuations: Sequence[Sequence[int]], rows: int) -> list[list[float]]:
        """The log-probability of each token of each continuation after the evaluated
        prompt: one forward pass per continuation, from the prompt's cache, trimmed back
        after each. (Not decoded together as on llama.cpp: MLX runs on a Linux CPU here,
        where it is not a speed target, and a padded batch would need the prompt's cache
        copied per option; not measured.)"""
        del rows  # one continuation per pass
        return [self._sequence(tokens) for tokens in continuations]

    def _sequence(self, tokens: Sequence[int]) -> list[float]:
        import numpy as np

        if self._prompt_row is None:
            raise GenerationError("sequences() needs a prompt: call evaluate() first")
        tokens = list(tokens)
        if not tokens:
            return []
        if self.base + len(tokens) > self._n_ctx:
            raise PromptTooLongError(
                f"the prompt ({self.base} tokens) and an option of {len(tokens)} tokens do not "
                f"fit the model's context of {self._n_ctx} tokens; use a larger n_ctx or "
                "shorter framings or options"
            )
        values = [float(self._prompt_row[tokens[0]])]
        if len(tokens) == 1:
            return values
        self._trim_to(self.base)
        try:
            rows = log_softmax(np.array(self._forward(tokens[:-1])))
            self._decodes += len(tokens) - 1
        finally:
            self._trim_to(self.base)
        values += [float(rows[i, token]) for i, token in enumerate(tokens[1:])]
        return values
