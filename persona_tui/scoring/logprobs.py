"""Next-token probabilities from llama.cpp without `logits_all=True`.

llama-cpp-python's logprob path (`logits_all=True`) keeps logits for every prompt position
and runs several times slower. Here the prompt is evaluated once (reusing the KV cache
prefix like generation does) and only the last position's logits are read
(`llama_get_logits_ith(ctx, -1)`). Continuations that take several tokens are scored by
walking a trie of their tokens: each branch point costs one single-token decode from the
cached prefix.

For numeric answers (`NumberScorer`), P(answer = "57") is
P("5") · P("7" | "5") · P(no further digit | "57"); the last factor is evaluated where
a longer candidate continues the same path ("1" → "10" → "100") and taken as 1 at the
end of a path, where another digit could only make an invalid number. Branches are
expanded most probable first; once the unexpanded ones hold little probability
(`tolerance`), each is split like its expanded siblings were (how often they ended, and
with which next digit) instead of costing a decode. `score_continuations` evaluates every
branch.

This module needs a llama.cpp backend; it reaches the `Llama` object through
`LlamaCppBackend.locked_llama()` and reuses whole `EVAL_BLOCK`s of the cached prompt, as the
backend's own generation does.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from persona_tui.backends.llamacpp.backend import EVAL_BLOCK, LlamaCppBackend
from persona_tui.errors import GenerationError, PromptTooLongError

# Branches are expanded most probable first, until the unexpanded ones hold at most
# DEFAULT_TOLERANCE of the probability on the candidates' first tokens; branches below
# DEFAULT_PRUNE are never expanded. Unexpanded branches are estimated from their expanded
# siblings (how often those ended vs went on, and with which next token), not dropped.
DEFAULT_TOLERANCE = 0.2
DEFAULT_PRUNE = 5e-3


@dataclass
class _Node:
    token: int
    children: dict[int, _Node] = field(default_factory=dict)
    value: int | None = None  # the candidate that ends here


@dataclass(frozen=True)
class NumberDistribution:
    """Probabilities of the answers low..high after a prompt."""

    probabilities: dict[int, float]  # P(answer = v), for the values with any probability
    p_numbers: float  # total probability of a valid number answer
    p_estimated: float  # probability of branches estimated from their siblings, not evaluated
    decodes: int  # extra single-token decodes beyond the prompt

    def mean(self) -> float | None:
        """The probability-weighted mean answer (None when no probability is on numbers)."""
        if self.p_numbers <= 0:
            return None
        return math.fsum(v * p for v, p in self.probabilities.items()) / self.p_numbers


# The last judge prompt evaluated on each backend: its whole blocks may be reused.
_PREVIOUS: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _judging(backend: LlamaCppBackend) -> Iterator[Any]:
    """The backend's `Llama` under its lock; afterwards its prompt cache is forgotten.

    The KV cache now ends with single-token branch decodes; the backend's next generation
    must not reuse them (`reset_cache`: it evaluates its whole prompt once).
    """
    try:
        with backend.locked_llama() as llama:
            yield llama
    finally:
        backend.reset_cache()


def _start(backend: LlamaCppBackend, llama: Any, prompt_tokens: list[int]) -> _Session:
    previous = _PREVIOUS.get(backend, [])
    _PREVIOUS[backend] = []  # until this evaluation has finished
    session = _Session(llama, prompt_tokens, previous, EVAL_BLOCK)
    _PREVIOUS[backend] = prompt_tokens
    return session


def supports_logprobs(backend: object) -> bool:
    """True when `backend` is a llama.cpp backend this module can read logits from."""
    return isinstance(backend, LlamaCppBackend)


class _Session:
    """Decoding from a prompt's cached state inside one lock hold.

    The prompt reuses the KV cache like the backend's generation does: only whole blocks
    of `block` positions of the previous judge prompt are kept, and the rest is evaluated
    in block-aligned batches, so the logits do not depend on what was judged before (the
    CPU kernels round differently with the batch shape; see backends/llamacpp/batching.py).
    """

    def __init__(
        self, llama: Any, prompt_tokens: Sequence[int], previous: Sequence[int], block: int
    ) -> None:
        import numpy as np

        self.np = np
        self.llama = llama
        self.base = len(prompt_tokens)
        self.n_vocab = int(llama.n_vocab())
        self.decodes = 0
        n_ctx = int(llama.n_ctx())
        if self.base + 4 > n_ctx:
            raise PromptTooLongError(
                f"the judge prompt is {self.base} tokens, more than the judge model's context "
                f"of {n_ctx} tokens; use a judge with a larger context (n_ctx) or shorter "
                "responses"
            )
        self._eval_prompt(prompt_tokens, previous, block)

    def _eval_prompt(self, tokens: Sequence[int], previous: Sequence[int], block: int) -> None:
        np = self.np
        llama = self.llama
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

        np = self.np
        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).astype(np.float64)
        top = logits.max()
        return logits - (top + math.log(float(np.exp(logits - top).sum())))

    def step(self, depth: int, token: int) -> Any:
        """Decode `token` at prompt + `depth` (dropping deeper cached tokens); its logprobs."""
        self.llama.n_tokens = self.base + depth
        self.llama.eval([token])
        self.decodes += 1
        return self.logprobs()


def _continuation_tokens(
    backend: LlamaCppBackend, llama: Any, prompt: str, prompt_tokens: Sequence[int], text: str
) -> list[int]:
    """Tokens of `text` as the model would write it right after `prompt`."""
    full = backend.tokenize_locked(prompt + text)
    n = len(prompt_tokens)
    if full[:n] == list(prompt_tokens) and len(full) > n:
        return full[n:]
    return list(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def _build_trie(sequences: Sequence[Sequence[int]], values: Sequence[int]) -> _Node:
    root = _Node(-1)
    for tokens, value in zip(sequences, values, strict=True):
        node = root
        for token in tokens:
            node = node.children.setdefault(token, _Node(token))
        node.value = value
    return root


class NumberScorer:
    """Scores integer answers low..high after prompts, on one llama.cpp backend.

    Caches the candidates' tokens per prompt ending and the vocabulary's digit tokens, so
    scoring many prompts that end the same way (one rubric) costs only the decodes.
    """

    def __init__(
        self,
        backend: LlamaCppBackend,
        low: int = 0,
        high: int = 100,
        answer_prefix: str = "",
        prune: float = DEFAULT_PRUNE,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        if not supports_logprobs(backend):
            raise GenerationError(
                f"{type(backend).__name__} gives no access to next-token probabilities"
            )
        self.backend = backend
        self.values = list(range(low, high + 1))
        self.answer_prefix = answer_prefix
        self.prune = prune
        self.tolerance = tolerance
        self._tries: dict[str, _Node] = {}
        self._digit_mask: Any = None

    def _digits(self, llama: Any) -> Any:
        """A boolean mask of the vocabulary's tokens whose text starts with a digit."""
        if self._digit_mask is None:
            import ctypes

            import llama_cpp
            import numpy as np

            vocab = llama_cpp.llama_model_get_vocab(llama.model)
            n_vocab = int(llama.n_vocab())
            mask = np.zeros(n_vocab, dtype=bool)
            size = 64
            buffer = ctypes.create_string_buffer(size)
            to_piece = llama_cpp.llama_token_to_piece
            for token in range(n_vocab):
                n = to_piece(vocab, token, buffer, size, 0, False)
                if n < 0:  # a piece longer than the buffer: grow it and ask again
                    size = -n
                    buffer = ctypes.create_string_buffer(size)
                    n = to_piece(vocab, token, buffer, size, 0, False)
                mask[token] = n > 0 and 0x30 <= buffer.raw[0] <= 0x39
            self._digit_mask = mask
        return self._digit_mask

    def _trie(self, llama: Any, prompt: str, prompt_tokens: Sequence[int]) -> _Node:
        key = prompt[-64:]
        if key not in self._tries:
            sequences = [
                _continuation_tokens(
                    self.backend, llama, prompt, prompt_tokens, f"{self.answer_prefix}{v}"
                )
                for v in self.values
            ]
            self._tries[key] = _build_trie(sequences, self.values)
        return self._tries[key]

    def distribution(self, prompt: str) -> NumberDistribution:
        """P(answer) for each candidate number after `prompt` (one prompt eval + branches)."""
        with _judging(self.backend) as llama:
            try:
                return self._distribution(llama, prompt)
            except (RuntimeError, ValueError, OSError) as error:
                llama.reset()
                raise GenerationError(f"llama.cpp failed while judging: {error}") from error

    def _distribution(self, llama: Any, prompt: str) -> NumberDistribution:
        prompt_tokens = self.backend.tokenize_locked(prompt)
        if not prompt_tokens:
            raise GenerationError("the judge prompt is empty")
        trie = self._trie(llama, prompt, prompt_tokens)
        digits = self._digits(llama)
        session = _start(self.backend, llama, prompt_tokens)
        exp = session.np.exp
        probabilities: dict[int, float] = {}
        estimated = 0.0

        def add(value: int, p: float) -> None:
            probabilities[value] = probabilities.get(value, 0.0) + p

        def estimate(node: _Node, p: float, siblings: list[_Branch]) -> None:
            """Split an unexpanded branch like its expanded siblings split theirs."""
            total = math.fsum(b.p for b in siblings)
            end = math.fsum(b.p * b.p_end for b in siblings) / total
            if node.value is not None:
                add(node.value, p * end)
            for child in node.children.values():
                if child.value is not None:
                    share = math.fsum(b.p * b.next.get(child.token, 0.0) for b in siblings)
                    add(child.value, p * share / total)

        def expand(node: _Node, depth: int, path_lp: float, logprobs: Any, scale: float) -> _Branch:
            nonlocal estimated
            p_end = 1.0
            if node.value is not None:
                p_end = max(0.0, 1.0 - float(exp(logprobs[digits]).sum()))
                add(node.value, math.exp(path_lp) * p_end)
            following = {
                c.token: math.exp(float(logprobs[c.token])) for c in node.children.values()
            }
            inner = []
            for child in node.children.values():
                p = math.exp(path_lp) * following[child.token]
                if child.children:
                    inner.append((p, child))
                elif child.value is not None:
                    add(child.value, p)
            if depth == 0:
                scale = math.fsum(following.values())
            inner.sort(key=lambda item: -item[0])
            remaining = math.fsum(p for p, _ in inner)
            expanded: list[_Branch] = []
            for p, child in inner:
                enough = self.tolerance > 0 and remaining <= self.tolerance * scale
                if expanded and (enough or p < self.prune):
                    estimate(child, p, expanded)
                    estimated += p
                else:
                    child_lp = path_lp + float(logprobs[child.token])
                    branch = expand(
                        child, depth + 1, child_lp, session.step(depth, child.token), scale
                    )
                    expanded.append(branch)
                remaining -= p
            return _Branch(math.exp(path_lp), p_end, following)

        expand(trie, 0, 0.0, session.logprobs(), 1.0)
        kept = {v: p for v, p in probabilities.items() if p > 0}
        return NumberDistribution(kept, math.fsum(kept.values()), estimated, session.decodes)


@dataclass(frozen=True)
class _Branch:
    """An expanded branch: its probability, P(answer ends here | it), P(next token | it)."""

    p: float
    p_end: float
    next: dict[int, float]


def score_continuations(
    backend: LlamaCppBackend, prompt: str, continuations: Sequence[str]
) -> list[float]:
    """log P(each continuation's tokens | prompt), with one prompt eval plus one decode per
    branch point of the continuations' token trie (no pruning, no end-of-answer factor)."""
    with _judging(backend) as llama:
        prompt_tokens = backend.tokenize_locked(prompt)
        sequences = [
            _continuation_tokens(backend, llama, prompt, prompt_tokens, text)
            for text in continuations
        ]
        trie = _build_trie(sequences, list(range(len(sequences))))
        session = _start(backend, llama, prompt_tokens)
        scores = [0.0] * len(sequences)

        def expand(node: _Node, depth: int, path_lp: float, logprobs: Any) -> None:
            for child in node.children.values():
                child_lp = path_lp + float(logprobs[child.token])
                if child.value is not None:
                    scores[child.value] = child_lp
                if child.children:
                    expand(child, depth + 1, child_lp, session.step(depth, child.token))

        expand(trie, 0, 0.0, session.logprobs())
        return scores
