"""Drawing tokens from llama.cpp's logits: the sampler chain llama-cpp-python builds for
`Llama.generate`, with its first sampler, the repeat penalty, applied to the logits row.

llama.cpp's penalty sampler looks each of the vocabulary's candidates up in its window of
the last 64 drawn tokens (262,144 hash lookups a draw on the demo model: 0.8 ms, 5% of a
one-sequence token on two cores and a sixth of an 8-sequence step), while only the
window's tokens can change. `RepeatPenalty` changes those logits in place with the same
float operations, then the rest of the chain runs: the same candidates, the same tokens
(tested draw for draw against llama-cpp-python's chain). `sample_tokens` is one-by-one
generation (what `Llama.generate` yields); batched.py draws each sequence of a batch the
same way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Sequence
from typing import Any

from persona_tui.values import SamplingParams

# llama-cpp-python's `Llama(last_n_tokens_size=64)`: the window of the repeat penalty.
PENALTY_LAST_N = 64


def sampler_chain(
    sampling: SamplingParams, seed: int, n_vocab: int, *, penalties: bool = False
) -> Any:
    """A llama.cpp sampler chain like llama-cpp-python's `Llama.generate` builds, without
    its first sampler, the repeat penalty (`RepeatPenalty` applies it), unless `penalties`
    (llama-cpp-python's chain itself, which the tests compare against)."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    parts = []
    if penalties:
        parts.append(
            llama_cpp.llama_sampler_init_penalties(
                n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0
            )
        )
    if sampling.temperature == 0:
        parts.append(llama_cpp.llama_sampler_init_greedy())
    else:
        parts += [
            llama_cpp.llama_sampler_init_top_k(sampling.top_k),
            llama_cpp.llama_sampler_init_typical(1.0, 1),
            llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1),
            llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1),
            llama_cpp.llama_sampler_init_temp(sampling.temperature),
            # llama.cpp seeds are 32-bit and 0xFFFFFFFF means "random".
            llama_cpp.llama_sampler_init_dist(seed % 0xFFFFFFFF),
        ]
    for part in parts:
        llama_cpp.llama_sampler_chain_add(chain, part)
    return chain


class RepeatPenalty:
    """llama.cpp's repeat penalty (`llama_sampler_init_penalties(n_vocab, 64, penalty, 0, 0)`)
    applied to a logits row in place: a token among the last 64 drawn has its logit
    multiplied by the penalty when ≤ 0, else divided by it (float32, as llama.cpp does)."""

    def __init__(self, penalty: float, last_n: int = PENALTY_LAST_N) -> None:
        import numpy as np

        self.penalty = np.float32(penalty)
        self.last_n = last_n
        self._window: deque[int] = deque()
        self._counts: dict[int, int] = {}

    def apply(self, logits: Any) -> None:
        """Penalise the window's tokens in `logits` (a float32 array over the vocabulary)."""
        import numpy as np

        if self.penalty == 1 or not self._counts:
            return
        ids = np.fromiter(self._counts, dtype=np.intp, count=len(self._counts))
        values = logits[ids]
        logits[ids] = np.where(values <= 0, values * self.penalty, values / self.penalty)

    def accept(self, token: int) -> None:
        """`token` was drawn (llama.cpp's `llama_sampler_penalties_accept`)."""
        if self.last_n <= 0:
            return
        self._counts[token] = self._counts.get(token, 0) + 1
        if len(self._window) >= self.last_n:
            old = self._window.popleft()
            self._counts[old] -= 1
            if not self._counts[old]:
                del self._counts[old]
        self._window.append(token)


def logits_row(ctx: Any, row: int, n_vocab: int) -> Any:
    """A writable float32 view of a decode's logits row (llama.cpp's own buffer)."""
    import llama_cpp
    import numpy as np

    pointer = llama_cpp.llama_get_logits_ith(ctx, row)
    if not pointer:
        raise RuntimeError(f"llama.cpp has no logits for row {row}")
    return np.ctypeslib.as_array(pointer, shape=(n_vocab,))


def sample_tokens(
    llama: Any, prompt_rest: Sequence[int], sampling: SamplingParams, seed: int
) -> Generator[int, None, None]:
    """Evaluate `prompt_rest` (the prompt's tokens after those kept in the KV cache), then
    draw tokens one at a time, each evaluated before the next is drawn: the tokens
    llama-cpp-python's `Llama.generate` yields for the same seed and sampling."""
    import llama_cpp

    n_vocab = int(llama.n_vocab())
    chain = sampler_chain(sampling, seed, n_vocab)
    penalty = RepeatPenalty(sampling.repeat_penalty)
    try:
        llama.eval(prompt_rest)
        while True:
            penalty.apply(logits_row(llama.ctx, -1, n_vocab))
            token = int(llama_cpp.llama_sampler_sample(chain, llama.ctx, -1))
            penalty.accept(token)
            yield token
            llama.eval([token])
    finally:
        llama_cpp.llama_sampler_free(chain)
