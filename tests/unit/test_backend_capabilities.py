"""Which backend offers which capability protocol (backends/base.py), checked without engines."""

from __future__ import annotations

from persona_tui.backends.base import (
    PrefixCache,
    TokenLogprobs,
    serves_parallel_requests,
)
from persona_tui.backends.llamacpp import backend as llamacpp
from persona_tui.backends.mlx import backend as mlx
from persona_tui.backends.openai import backend as openai


def test_each_backend_offers_its_capabilities() -> None:
    assert issubclass(llamacpp.LlamaCppBackend, TokenLogprobs)
    assert issubclass(llamacpp.LlamaCppBackend, PrefixCache)
    assert issubclass(mlx.MlxBackend, TokenLogprobs)
    assert issubclass(mlx.MlxBackend, PrefixCache)
    assert not issubclass(openai.OpenAIBackend, TokenLogprobs)
    assert not issubclass(openai.OpenAIBackend, PrefixCache)


def test_only_a_true_supports_parallel_serves_parallel_requests() -> None:
    assert serves_parallel_requests(object.__new__(openai.OpenAIBackend))
    assert not serves_parallel_requests(object.__new__(llamacpp.LlamaCppBackend))
    assert not serves_parallel_requests(object.__new__(mlx.MlxBackend))

    class NotNow:
        supports_parallel = False

    assert not serves_parallel_requests(NotNow())
