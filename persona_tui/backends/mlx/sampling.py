"""The sampling parameters of a request as mlx-lm's sampler and logits processors.

The repeat penalty covers the same window as llama.cpp's (its last_n_tokens_size), and
also the part of the prompt that came from the prompt cache, which mlx-lm would not show
its processors.
"""

from __future__ import annotations

from typing import Any

from persona_tui.values import SamplingParams

# llama.cpp's default repeat-penalty window (llama-cpp-python's last_n_tokens_size).
REPEAT_PENALTY_WINDOW = 64


def mlx_sampling(
    mx: Any, params: SamplingParams, vocab_size: int, cached_prefix: list[int]
) -> tuple[Any, list[Any]]:
    """mlx-lm's sampler and logits processors for `params`; `cached_prefix` holds the
    prompt tokens taken from the cache (empty when mlx-lm sees the whole prompt)."""
    from mlx_lm.sample_utils import make_logits_processors, make_sampler

    top_k = params.top_k if 0 < params.top_k < vocab_size else 0
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
    window = mx.array(cached_prefix[-REPEAT_PENALTY_WINDOW:], dtype=mx.uint32)

    def penalise_with_cached_prefix(seen: Any, logits: Any) -> Any:
        if window.size:
            seen = mx.concatenate([window, seen.astype(mx.uint32)])
        return penalty(seen, logits)

    return sampler, [penalise_with_cached_prefix]
