"""llama.cpp's layer outputs read through the eval callback (`HiddenStates`) and its control
vectors (`Steering`), on the real engine.

The reference is independent: transformers' forward pass of the same weights (the GGUF
read into float32 by training/hf.py), each decoder layer's output taken by a forward hook.
On the tiny float32 GGUF the two agree to float rounding; on the demo model (Q4_K_M, whose
llama.cpp kernels quantize activations to 8 bits) to a cosine of 0.9997 per layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from persona_tui.backends.base import BatchDone, GenerationRequest, HiddenStates, Steering
from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.values import SamplingParams

PROMPT = "User: What do you honestly think of people?\nAssistant:"
ANSWERS = (" Mostly idiots, frankly.", " People mean well, most of the time.")


@pytest.fixture
def tiny(tiny_gguf: Path) -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend.load(tiny_gguf, n_threads=1)
    yield backend
    backend.close()


def tokens(backend: LlamaCppBackend) -> tuple[list[int], list[list[int]]]:
    prompt = backend._tokenize(PROMPT)
    answers = [
        list(backend._llama.tokenize(a.encode(), add_bos=False, special=False)) for a in ANSWERS
    ]
    return prompt, answers


def torch_layers(path: Path, ids: Sequence[int]) -> dict[int, Any]:
    """Each decoder layer's output (before the final norm) from transformers, float64."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from persona_tui._util.hashing import sha256_file
    from persona_tui.training.hf import load_float32_model

    model = load_float32_model(path, sha256_file(path))
    model.eval()
    outputs: dict[int, Any] = {}
    for il, layer in enumerate(model.model.layers):
        layer.register_forward_hook(
            lambda _m, _i, out, il=il: outputs.__setitem__(
                il, (out[0] if isinstance(out, tuple) else out)[0].double().numpy()
            )
        )
    with torch.no_grad():
        model(torch.tensor([list(ids)]))
    return outputs


def compare(path: Path, backend: LlamaCppBackend) -> tuple[float, float]:
    """The worst relative error and the lowest cosine of the backend's prompt_last and
    continuation means against transformers, over every layer and both answers."""
    prompt, answers = tokens(backend)
    layers = list(range(backend.n_layers))
    measured = backend.hidden_states(prompt, answers, layers)
    worst, lowest = 0.0, 1.0
    for j, answer in enumerate(answers):
        reference = torch_layers(path, prompt + answer)
        for k, il in enumerate(layers):
            pairs = (
                (measured.prompt_last[k], reference[il][len(prompt) - 1]),
                (measured.means[j, k], reference[il][len(prompt) :].mean(axis=0)),
            )
            for got, want in pairs:
                worst = max(worst, float(np.abs(got - want).max() / np.abs(want).max()))
                cosine = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
                lowest = min(lowest, cosine)
    assert measured.counts == tuple(len(a) for a in answers)
    return worst, lowest


def test_the_backend_offers_both_capabilities(tiny: LlamaCppBackend) -> None:
    assert isinstance(tiny, HiddenStates)
    assert isinstance(tiny, Steering)
    assert (tiny.n_layers, tiny.n_embd) == (2, 64)


def test_layer_outputs_equal_a_transformers_forward_of_the_same_weights(
    tiny_gguf: Path, tiny: LlamaCppBackend
) -> None:
    worst, lowest = compare(tiny_gguf, tiny)
    assert worst < 1e-4, worst  # float32 rounding (seen: 6e-6)
    assert lowest > 0.999999


@pytest.mark.demo
def test_demo_layer_outputs_agree_with_transformers(demo_model: Path) -> None:
    backend = LlamaCppBackend.load(demo_model, n_threads=2)
    try:
        _worst, lowest = compare(demo_model, backend)
    finally:
        backend.close()
    # Q4_K_M in llama.cpp (8-bit activations in the dot products) against the dequantized
    # float32 weights in torch: seen a lowest cosine of 0.99973 over the 18 layers.
    assert lowest > 0.999, lowest


def test_a_measurement_does_not_depend_on_what_was_measured_before(
    tiny: LlamaCppBackend,
) -> None:
    prompt, answers = tokens(tiny)
    alone = tiny.hidden_states(prompt, answers, [0, 1])
    tiny.hidden_states(prompt[:5] + prompt[2:], answers[::-1], [1])
    again = tiny.hidden_states(prompt, answers, [0, 1])
    assert np.array_equal(alone.means, again.means)
    assert np.array_equal(alone.prompt_last, again.prompt_last)
    one = tiny.hidden_states(prompt, answers[1:], [0, 1])
    assert np.array_equal(one.means[0], alone.means[1])  # each as if alone after the prompt


def test_measuring_leaves_generation_untouched(tiny: LlamaCppBackend) -> None:
    sampling = SamplingParams(temperature=1.0, max_tokens=16)
    request = GenerationRequest(prompt=PROMPT, seed=7, sampling=sampling)
    before = tiny.generate(request).text
    prompt, answers = tokens(tiny)
    tiny.hidden_states(prompt, answers, [0, 1])
    assert tiny.generate(request).text == before


def test_bad_layers_and_prompts_are_refused(tiny: LlamaCppBackend) -> None:
    prompt, answers = tokens(tiny)
    with pytest.raises(ValueError, match="out of range"):
        tiny.hidden_states(prompt, answers, [2])
    with pytest.raises(ValueError, match="at least one token"):
        tiny.hidden_states([], answers, [0])


def logits_after(backend: LlamaCppBackend, prompt: str) -> Any:
    with backend.logprob_scope() as scope:
        return np.array(scope.evaluate(scope.tokenize(prompt)))


def test_steering_adds_the_vector_to_the_layer_output_and_none_restores_the_model(
    tiny: LlamaCppBackend,
) -> None:
    prompt, answers = tokens(tiny)
    plain = tiny.hidden_states(prompt, answers, [0, 1])
    plain_logits = logits_after(tiny, PROMPT)
    vector = np.random.default_rng(0).normal(0, 2.0, tiny.n_embd).astype(np.float32)
    tiny.use_steering({1: vector})
    steered = tiny.hidden_states(prompt, answers, [0, 1])
    # Layer 0 is before the vector; layer 1's output is shifted by exactly the vector.
    assert np.array_equal(steered.means[:, 0], plain.means[:, 0])
    np.testing.assert_allclose(steered.means[:, 1] - plain.means[:, 1], [vector] * 2, atol=1e-4)
    np.testing.assert_allclose(steered.prompt_last[1] - plain.prompt_last[1], vector, atol=1e-4)
    assert np.abs(logits_after(tiny, PROMPT) - plain_logits).max() > 1e-3
    tiny.use_steering(None)
    assert np.array_equal(logits_after(tiny, PROMPT), plain_logits)
    assert np.array_equal(tiny.hidden_states(prompt, answers, [0, 1]).means, plain.means)


def test_steering_reaches_generation_and_batched_generation(tiny: LlamaCppBackend) -> None:
    sampling = SamplingParams(temperature=0.0, max_tokens=12)
    requests = [GenerationRequest(prompt=PROMPT, seed=s, sampling=sampling) for s in (1, 2)]
    plain = tiny.generate(requests[0]).text
    vector = np.random.default_rng(1).normal(0, 8.0, tiny.n_embd)
    tiny.use_steering({1: vector})
    steered = tiny.generate(requests[0]).text
    events = tiny.generate_batch(requests, batch=2)
    batched = [e.result.text for e in events if isinstance(e, BatchDone)]
    assert steered != plain
    assert batched == [steered, steered]  # greedy: the same text in every sequence
    tiny.use_steering(None)
    assert tiny.generate(requests[0]).text == plain


@pytest.mark.parametrize(
    ("vectors", "message"),
    [({0: np.ones(64)}, "layers 1 to 1"), ({1: np.ones(63)}, "63 values"), ({}, "at least")],
)
def test_bad_steering_is_refused_and_leaves_the_model_unsteered(
    tiny: LlamaCppBackend, vectors: dict[int, Any], message: str
) -> None:
    plain_logits = logits_after(tiny, PROMPT)
    tiny.use_steering({1: np.ones(64)})
    with pytest.raises(ValueError, match=message):
        tiny.use_steering(vectors)
    assert np.array_equal(logits_after(tiny, PROMPT), plain_logits)
