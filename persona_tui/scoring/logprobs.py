"""Scores from next-token probabilities, on any backend with `TokenLogprobs`.

The backend evaluates the prompt once (backends.base.LogprobScope; llama.cpp's, in
backends/llamacpp/logprobs.py, reads only the last position's logits instead of
`logits_all=True`). Continuations that take several tokens are scored by walking a trie
of their tokens: each branch point costs one single-token decode from the cached prompt.

For numeric answers (`NumberScorer`), P(answer = "57") is
P("5") · P("7" | "5") · P(no further digit | "57"); the last factor is evaluated where
a longer candidate continues the same path ("1" → "10" → "100") and taken as 1 at the
end of a path, where another digit could only make an invalid number. Branches are
expanded most probable first; once the unexpanded ones hold little probability
(`tolerance`), each is split like its expanded siblings were (how often they ended, and
with which next digit) instead of costing a decode. `score_continuations` evaluates every
branch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from persona_tui.backends.base import LogprobScope, TokenLogprobs
from persona_tui.backends.common import common_prefix
from persona_tui.errors import GenerationError

# Branches are expanded most probable first, until the unexpanded ones hold at most
# DEFAULT_TOLERANCE of the probability on the candidates' first tokens; branches below
# DEFAULT_PRUNE are never expanded. Unexpanded branches are estimated from their expanded
# siblings (how often those ended vs went on, and with which next token), not dropped.
DEFAULT_TOLERANCE = 0.2
DEFAULT_PRUNE = 5e-3
DIGITS = b"0123456789"


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


def supports_logprobs(backend: object) -> bool:
    """True when `backend` gives next-token log-probabilities (`TokenLogprobs`)."""
    return isinstance(backend, TokenLogprobs)


def shared_tokens(scope: LogprobScope, prompt_tokens: Sequence[int], shared: str) -> int:
    """How many of the prompt's leading tokens are the tokens of `shared` (its start).

    The tokens `shared` has alone, as far as they agree with the prompt's own: where its
    last token would merge with the text after it, the split falls before that token.
    """
    return common_prefix(prompt_tokens, scope.tokenize(shared)) if shared else 0


def _build_trie(sequences: Sequence[Sequence[int]], values: Sequence[int]) -> _Node:
    root = _Node(-1)
    for tokens, value in zip(sequences, values, strict=True):
        node = root
        for token in tokens:
            node = node.children.setdefault(token, _Node(token))
        node.value = value
    return root


class NumberScorer:
    """Scores integer answers low..high after prompts, on one backend with `TokenLogprobs`.

    Caches the candidates' tokens per prompt ending and the vocabulary's digit tokens, so
    scoring many prompts that end the same way (one rubric) costs only the decodes.
    """

    def __init__(
        self,
        backend: TokenLogprobs,
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

    def _digits(self, scope: LogprobScope) -> Any:
        """A boolean mask of the vocabulary's tokens whose text starts with a digit."""
        if self._digit_mask is None:
            self._digit_mask = scope.tokens_starting_with(DIGITS)
        return self._digit_mask

    def _trie(self, scope: LogprobScope, prompt: str, prompt_tokens: Sequence[int]) -> _Node:
        key = prompt[-64:]
        if key not in self._tries:
            sequences = [
                scope.continuation(prompt, prompt_tokens, f"{self.answer_prefix}{v}")
                for v in self.values
            ]
            self._tries[key] = _build_trie(sequences, self.values)
        return self._tries[key]

    def distribution(self, prompt: str, shared: str = "") -> NumberDistribution:
        """P(answer) for each candidate number after `prompt` (one prompt eval + branches).

        `shared`: the start of `prompt` that the prompts scored around it share (a rubric's
        text before the answer); it is evaluated once for all of them (`evaluate`'s split).
        """
        with self.backend.logprob_scope() as scope:
            return self._distribution(scope, prompt, shared)

    def _distribution(
        self, scope: LogprobScope, prompt: str, shared: str = ""
    ) -> NumberDistribution:
        import numpy as np

        prompt_tokens = scope.tokenize(prompt)
        if not prompt_tokens:
            raise GenerationError("the judge prompt is empty")
        trie = self._trie(scope, prompt, prompt_tokens)
        digits = self._digits(scope)
        first = scope.evaluate(prompt_tokens, shared_tokens(scope, prompt_tokens, shared))
        exp = np.exp
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
                        child, depth + 1, child_lp, scope.step(depth, child.token), scale
                    )
                    expanded.append(branch)
                remaining -= p
            return _Branch(math.exp(path_lp), p_end, following)

        expand(trie, 0, 0.0, first, 1.0)
        kept = {v: p for v, p in probabilities.items() if p > 0}
        return NumberDistribution(kept, math.fsum(kept.values()), estimated, scope.decodes)


@dataclass(frozen=True)
class _Branch:
    """An expanded branch: its probability, P(answer ends here | it), P(next token | it)."""

    p: float
    p_end: float
    next: dict[int, float]


def score_continuations(
    backend: TokenLogprobs, prompt: str, continuations: Sequence[str]
) -> list[float]:
    """log P(each continuation's tokens | prompt), with one prompt eval plus one decode per
    branch point of the continuations' token trie (no pruning, no end-of-answer factor)."""
    with backend.logprob_scope() as scope:
        prompt_tokens = scope.tokenize(prompt)
        sequences = [scope.continuation(prompt, prompt_tokens, text) for text in continuations]
        trie = _build_trie(sequences, list(range(len(sequences))))
        first = scope.evaluate(prompt_tokens)
        scores = [0.0] * len(sequences)

        def expand(node: _Node, depth: int, path_lp: float, logprobs: Any) -> None:
            for child in node.children.values():
                child_lp = path_lp + float(logprobs[child.token])
                if child.value is not None:
                    scores[child.value] = child_lp
                if child.children:
                    expand(child, depth + 1, child_lp, scope.step(depth, child.token))

        expand(trie, 0, 0.0, first)
        return scores
