"""A generation between two scorings never changes a score.

The generation's KV cache was evaluated along its own batch plan (split where its framing
ends), which scoring must not reuse as if it had evaluated it itself; the backend forgets
the last scored prompt when it generates. (On these models a block split differently has
not yet been seen to change the numbers, so this guards the property, not the mechanism.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_tui.backends.base import GenerationRequest
from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.scoring.logprobs import score_continuations
from persona_tui.values import SamplingParams

# Several evaluation blocks long, so whole blocks of it could be reused.
FRAMING = "User: Tell me about the weather today, and about tomorrow too.\nAssistant: Sunny.\n" * 20


@pytest.fixture(params=["tiny", pytest.param("demo", marks=pytest.mark.demo)])
def model(request: pytest.FixtureRequest) -> Path:
    path: Path = request.getfixturevalue("tiny_gguf" if request.param == "tiny" else "demo_model")
    return path


def test_scores_are_the_same_before_and_after_a_generation(model: Path) -> None:
    prompt = FRAMING + "User: and the day after?\nAssistant:"
    texts = [" Rain.", " Sunny again, I think.", " Snow"]
    fresh = LlamaCppBackend.load(model, n_threads=1)
    try:
        expected = score_continuations(fresh, prompt, texts)
    finally:
        fresh.close()
    backend = LlamaCppBackend.load(model, n_threads=1)
    try:
        first = score_continuations(backend, prompt, texts)
        backend.generate(
            GenerationRequest(
                prompt=FRAMING + "User: what about next week?\nAssistant:",
                seed=3,
                sampling=SamplingParams(temperature=0.0, max_tokens=8),
                # A framing hint that ends inside the prefix both prompts share: the
                # generation split a block there, so that block must not be reused.
                framing_chars=len(FRAMING) // 2 + 7,
            )
        )
        again = score_continuations(backend, prompt, texts)
    finally:
        backend.close()
    assert first == expected
    assert again == expected
