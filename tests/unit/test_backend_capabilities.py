"""Which backend offers which capability protocol (backends/base.py), checked without engines."""

from __future__ import annotations

from persona_tui.backends.base import (
    TokenLogprobs,
    serves_parallel_requests,
)
from persona_tui.backends.llamacpp import backend as llamacpp
from persona_tui.backends.mlx import backend as mlx
from persona_tui.backends.openai import backend as openai


def test_each_backend_offers_its_capabilities() -> None:
    # The local engines keep a prompt cache that can be forgotten (reset_cache: benches,
    # tests; no caller checks it as a capability) and say their end-of-turn token
    # (backends.base.EndOfTurnToken).
    assert issubclass(llamacpp.LlamaCppBackend, TokenLogprobs)
    assert callable(getattr(llamacpp.LlamaCppBackend, "reset_cache", None))
    assert isinstance(llamacpp.LlamaCppBackend.end_of_turn_token, property)
    assert issubclass(mlx.MlxBackend, TokenLogprobs)
    assert callable(getattr(mlx.MlxBackend, "reset_cache", None))
    assert isinstance(mlx.MlxBackend.end_of_turn_token, property)
    assert not issubclass(openai.OpenAIBackend, TokenLogprobs)
    assert not hasattr(openai.OpenAIBackend, "reset_cache")


def test_only_a_true_supports_parallel_serves_parallel_requests() -> None:
    assert serves_parallel_requests(object.__new__(openai.OpenAIBackend))
    assert not serves_parallel_requests(object.__new__(llamacpp.LlamaCppBackend))
    assert not serves_parallel_requests(object.__new__(mlx.MlxBackend))

    class NotNow:
        supports_parallel = False

    assert not serves_parallel_requests(NotNow())
