"""Evaluation batches that make prompt-cache reuse exact.

llama.cpp's CPU kernels round differently depending on how many tokens share a batch
(e.g. repacked quantized weights use a 4-token GEMM and a 1-token GEMV), so a prompt
evaluated after a cached prefix can give slightly different logits, and a different
sample, than the same prompt evaluated from scratch. So each prompt is evaluated in a
*plan* of batches that depends only on the prompt itself, and the KV cache of an earlier
prompt is reused only up to a batch end that both plans share, with every earlier batch
identical. Then every token's computation is the same whatever ran before, and a seed
gives byte-identical text in any trial order, also after a resume.

A plan tiles the prompt in blocks aligned to multiples of `block`, except that a caller
may name a *split*: the end of the part that other prompts share (a condition's framing
and demonstrations). A batch then ends exactly there, and the rest is tiled from it, so
trials that share the framing reuse all of it, not just its whole blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

from persona_tui.backends.common import common_prefix


def batch_ends(n_tokens: int, block: int, split: int = 0) -> tuple[int, ...]:
    """End positions of the batches that evaluate an `n_tokens` prompt."""
    if not 0 < split < n_tokens:
        split = 0
    ends = list(range(block, split, block))
    if split:
        ends.append(split)
    ends.extend(range(split + block, n_tokens, block))
    ends.append(n_tokens)
    return tuple(ends)


def reusable_prefix(
    cached_tokens: Sequence[int],
    cached_ends: Sequence[int],
    tokens: Sequence[int],
    ends: Sequence[int],
) -> int:
    """How many cached positions give exactly what evaluating `tokens` afresh would.

    The answer is a batch end of both plans, reached through identical batches of
    identical tokens, and short of the whole prompt: the last batch is always evaluated,
    because sampling needs its logits.
    """
    common = common_prefix(cached_tokens, tokens)
    keep = 0
    for cached_end, end in zip(cached_ends, ends, strict=False):
        if cached_end != end or end > common or end >= len(tokens):
            break
        keep = end
    return keep


def split_points(start: int, count: int, ends: Sequence[int]) -> list[int]:
    """Sizes of the eval() calls for positions [start, start + count) under a plan."""
    sizes: list[int] = []
    position = start
    stop = start + count
    for end in ends:
        if end <= position:
            continue
        if end >= stop:
            break
        sizes.append(end - position)
        position = end
    sizes.append(stop - position)
    return sizes
