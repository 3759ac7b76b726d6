"""Hidden states and steering on MLX (backends/mlx/activations.py, steering.py), for real on
the tiny MLX model (tests/mlx_fixture.py).

The reference is an independent forward pass of the same weights: the folder loaded by
transformers (LlamaForCausalLM, float32, eager attention) with forward hooks on its decoder
layers. Tolerance 1e-5 absolute on values up to ~4.5 (float32 against float32; the worst
error seen was 1.2e-7, over the short and the 700-token prompt). A sliding-window variant
of the model checks that a cache that cannot be trimmed back to the prompt is rebuilt, in
measurement and in scoring (logprobs.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mlx_lm", reason="the MLX backend needs: pip install 'persona-tui[mlx]'")

from persona_tui.backends.base import (
    BatchDone,
    GenerationRequest,
    HiddenStateMeans,
    HiddenStates,
    Steering,
)
from persona_tui.backends.mlx.backend import MlxBackend
from persona_tui.errors import PromptTooLongError
from persona_tui.values import SamplingParams
from tests.mlx_fixture import write_tiny_mlx

TOLERANCE = 1e-5
PROMPT = [1, 50, 61, 72, 83, 94]
CONTINUATIONS = [[120, 121, 122, 123], [200], [7, 300, 301]]
SAMPLING = SamplingParams(temperature=0.9, max_tokens=16)


@pytest.fixture(scope="module", autouse=True)
def _no_compile() -> None:
    import mlx.core as mx

    mx.disable_compile()  # MLX's JIT takes seconds per new shape on CPU; tests stay fast


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_mlx(tmp_path_factory.mktemp("mlx") / "tiny-mlx")


@pytest.fixture(scope="module")
def backend(folder: Path) -> MlxBackend:
    return MlxBackend.load(folder, max_batch=4)


@pytest.fixture
def unsteered(backend: MlxBackend) -> Any:
    yield backend
    backend.use_steering(None)


@pytest.fixture(scope="module")
def reference(folder: Path) -> Any:
    """transformers' forward of the same folder: tokens -> (hidden_states, layer outputs)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()

    def forward(tokens: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        outputs: dict[int, np.ndarray] = {}

        def keep(index: int) -> Any:
            def hook(_module: Any, _inputs: Any, output: Any) -> None:
                value = output[0] if isinstance(output, tuple) else output
                outputs[index] = value[0].detach().numpy().astype(np.float64)

            return hook

        handles = [
            layer.register_forward_hook(keep(i)) for i, layer in enumerate(model.model.layers)
        ]
        try:
            with torch.no_grad():
                result = model(torch.tensor([list(tokens)]), output_hidden_states=True)
        finally:
            for handle in handles:
                handle.remove()
        states = [h[0].numpy().astype(np.float64) for h in result.hidden_states]
        return states, [outputs[i] for i in range(len(outputs))]

    return forward


def logprobs(backend: MlxBackend, prompt: Sequence[int] = PROMPT) -> np.ndarray:
    with backend.logprob_scope() as scope:
        return np.array(scope.evaluate(list(prompt)))


def plain_logits(folder: Path, prompt: Sequence[int] = PROMPT) -> np.ndarray:
    """The last position's logits of the folder loaded by mlx-lm alone (no hooks)."""
    import mlx.core as mx
    import mlx_lm

    model = mlx_lm.load(str(folder))[0]
    logits = model(mx.array([list(prompt)]))[0, -1].astype(mx.float32)
    return np.array(logits)


def worst(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


# --------------------------------------------------------------------- hidden states


def test_offers_both_capabilities(backend: MlxBackend) -> None:
    assert isinstance(backend, HiddenStates)
    assert isinstance(backend, Steering)
    assert (backend.n_layers, backend.n_embd) == (2, 64)


def test_layer_outputs_match_a_transformers_forward_pass(
    backend: MlxBackend, reference: Any
) -> None:
    """prompt_last at the prompt's last token, means over each continuation's positions,
    each continuation evaluated after the prompt alone."""
    layers = [1, 0, 1]
    measured = backend.hidden_states(PROMPT, CONTINUATIONS, layers)
    assert isinstance(measured, HiddenStateMeans)
    assert measured.layers == (1, 0, 1)
    assert measured.counts == (4, 1, 3)
    assert measured.prompt_last.shape == (3, 64) and measured.prompt_last.dtype == np.float64
    assert measured.means.shape == (3, 3, 64) and measured.means.dtype == np.float64
    n = len(PROMPT)
    for j, continuation in enumerate(CONTINUATIONS):
        _, outputs = reference(PROMPT + continuation)
        for k, layer in enumerate(layers):
            assert worst(measured.prompt_last[k], outputs[layer][n - 1]) < TOLERANCE
            assert worst(measured.means[j, k], outputs[layer][n:].mean(axis=0)) < TOLERANCE


def test_transformers_last_hidden_state_is_after_the_final_norm(reference: Any) -> None:
    """hidden_states[il + 1] is layer il's output except for the last layer, where
    transformers gives it after the model's final norm: compare layer outputs, not it."""
    states, outputs = reference(PROMPT)
    assert worst(states[1], outputs[0]) == 0.0
    assert worst(states[2], outputs[1]) > 0.01  # normed, not the residual stream


def test_a_long_prompt_is_read_across_its_chunks(backend: MlxBackend, reference: Any) -> None:
    prompt = [1] + [int(t) for t in np.random.default_rng(3).integers(10, 400, size=700)]
    measured = backend.hidden_states(prompt, [[5, 6]], [0, 1])
    _, outputs = reference([*prompt, 5, 6])
    for layer in (0, 1):
        assert worst(measured.prompt_last[layer], outputs[layer][len(prompt) - 1]) < TOLERANCE
        assert worst(measured.means[0, layer], outputs[layer][-2:].mean(axis=0)) < TOLERANCE


def test_an_empty_continuation_counts_zero_with_a_zero_mean(backend: MlxBackend) -> None:
    measured = backend.hidden_states(PROMPT, [[], [200]], [1])
    assert measured.counts == (0, 1)
    assert not measured.means[0].any()  # as llama.cpp's backend: nothing to average
    assert measured.means[1].any()
    assert backend.hidden_states(PROMPT, [], [0]).means.shape == (0, 1, 64)
    assert backend.hidden_states(PROMPT, [[200]], []).prompt_last.shape == (0, 64)


def test_measuring_changes_no_later_generation_or_score(backend: MlxBackend) -> None:
    request = GenerationRequest("the bully", 7, SAMPLING)
    before = backend.generate(request).text, logprobs(backend)
    backend.hidden_states(PROMPT, CONTINUATIONS, [0, 1])
    assert backend.generate(request).text == before[0]
    assert np.array_equal(logprobs(backend), before[1])


def test_bad_layers_and_long_texts_are_refused(folder: Path, backend: MlxBackend) -> None:
    for layers in ([2], [-1], [True], [0.5]):
        with pytest.raises(ValueError, match="layer"):
            backend.hidden_states(PROMPT, CONTINUATIONS, layers)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompt"):
        backend.hidden_states([], CONTINUATIONS, [0])
    short = MlxBackend.load(folder, n_ctx=16)
    short.hidden_states(PROMPT, [[5] * 10], [0])  # 16 tokens: fits exactly
    with pytest.raises(PromptTooLongError):
        short.hidden_states(PROMPT, [[5], [5] * 11], [0])


# ------------------------------------------------------------------------ steering


def vector(scale: float = 4.0, seed: int = 0) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal(64)


def test_steering_moves_logits_and_none_gives_the_unsteered_numbers_back(
    unsteered: MlxBackend, folder: Path
) -> None:
    backend = unsteered
    request = GenerationRequest("the bully", 11, SAMPLING)
    base_logprobs, base_text = logprobs(backend), backend.generate(request).text
    plain = plain_logits(folder)
    backend.use_steering({1: vector()})
    steered = logprobs(backend)
    assert worst(steered, base_logprobs) > 0.1
    assert backend.generate(request).text != base_text
    backend.use_steering(None)
    assert np.array_equal(logprobs(backend), base_logprobs)
    assert backend.generate(request).text == base_text
    # The hooked layers with no vector compute exactly what mlx-lm's model does alone.
    import mlx.core as mx

    logits = backend._model(mx.array([PROMPT]))[0, -1].astype(mx.float32)
    assert np.array_equal(np.array(logits), plain)


def test_steering_reaches_generation_batches_and_scores_alike(unsteered: MlxBackend) -> None:
    backend = unsteered
    batch = [GenerationRequest("the bully", 100 + i, SAMPLING) for i in range(3)]
    unsteered_texts = [backend.generate(r).text for r in batch]
    backend.use_steering({1: vector(seed=1)})
    alone = [backend.generate(r).text for r in batch]
    events = list(backend.generate_batch(batch))
    batched = [
        e.result.text
        for e in sorted((e for e in events if isinstance(e, BatchDone)), key=lambda e: e.index)
    ]
    assert batched == alone
    assert alone != unsteered_texts
    backend.use_steering(None)
    assert [backend.generate(r).text for r in batch] == unsteered_texts


def test_switching_forgets_the_prompt_cache(unsteered: MlxBackend) -> None:
    backend = unsteered
    request = GenerationRequest("the bully is here", 3, SAMPLING)
    backend.generate(request)
    assert backend.generate(request).prompt_tokens_evaluated == 1  # from the cache
    backend.use_steering({1: vector()})
    assert backend.generate(request).prompt_tokens_evaluated > 1
    backend.use_steering({1: vector()})  # the same vectors: nothing to forget
    assert backend.generate(request).prompt_tokens_evaluated == 1
    backend.use_steering(None)
    assert backend.generate(request).prompt_tokens_evaluated > 1


def test_steering_shifts_its_layers_output_by_exactly_the_vector(unsteered: MlxBackend) -> None:
    """Layer 1's output moves by the vector at every position (each single-token
    continuation is one position); layer 0, below it, does not move at all."""
    backend = unsteered
    singles = [[t] for t in CONTINUATIONS[0]] + CONTINUATIONS
    before = backend.hidden_states(PROMPT, singles, [0, 1])
    added = vector()
    backend.use_steering({1: added})
    after = backend.hidden_states(PROMPT, singles, [0, 1])
    expected = added.astype(np.float32).astype(np.float64)
    assert np.array_equal(after.prompt_last[0], before.prompt_last[0])
    assert np.array_equal(after.means[:, 0], before.means[:, 0])
    assert worst(after.prompt_last[1] - before.prompt_last[1], expected) < TOLERANCE
    for j in range(len(singles)):
        assert worst(after.means[j, 1] - before.means[j, 1], expected) < TOLERANCE


@pytest.mark.parametrize(
    ("vectors", "match"),
    [
        ({0: np.ones(64)}, "out of range"),
        ({2: np.ones(64)}, "out of range"),
        ({-1: np.ones(64)}, "out of range"),
        ({True: np.ones(64)}, "not an integer"),
        ({1: np.ones(63)}, "64 wide"),
        ({1: np.ones((1, 64))}, "64 wide"),
        ({1: np.full(64, np.nan)}, "NaN"),
        ({1: ["a"] * 64}, "not numbers"),
    ],
)
def test_bad_vectors_are_refused_and_leave_steering_off(
    unsteered: MlxBackend, vectors: dict[Any, Any], match: str
) -> None:
    backend = unsteered
    base = logprobs(backend)
    backend.use_steering({1: vector()})
    with pytest.raises(ValueError, match=match):
        backend.use_steering(vectors)
    assert np.array_equal(logprobs(backend), base)


def test_no_vectors_is_no_steering_and_a_model_without_layers_refuses(
    unsteered: MlxBackend,
) -> None:
    from types import SimpleNamespace

    from persona_tui.backends.mlx.steering import LayerHooks
    from persona_tui.errors import GenerationError

    base = logprobs(unsteered)
    unsteered.use_steering({1: vector()})
    unsteered.use_steering({})
    assert np.array_equal(logprobs(unsteered), base)
    hooks = LayerHooks.install(SimpleNamespace(layers=None))
    assert hooks.n_layers == 0
    with pytest.raises(GenerationError, match="no list of layers"):
        hooks.check_usable()


@pytest.fixture(scope="module")
def window(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> MlxBackend:
    """The tiny model with a 4-token sliding window on layer 0: a longer prompt wraps it,
    so the cache cannot be trimmed back to the prompt."""
    import json
    import shutil

    from mlx_lm.models.cache import RotatingKVCache

    copy = tmp_path_factory.mktemp("mlx") / "window"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text(encoding="utf-8"))
    config.update(layer_types=["sliding_attention", "full_attention"], sliding_window=4)
    (copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    backend = MlxBackend.load(copy)
    assert isinstance(backend._model.make_cache()[0], RotatingKVCache)
    return backend


def test_a_cache_that_cannot_be_trimmed_evaluates_the_prompt_again(window: MlxBackend) -> None:
    """Each continuation still reads what it reads alone after the prompt."""
    together = window.hidden_states(PROMPT, CONTINUATIONS, [0, 1])
    for j, continuation in enumerate(CONTINUATIONS):
        alone = window.hidden_states(PROMPT, [continuation], [0, 1])
        assert np.array_equal(alone.means[0], together.means[j])
        assert np.array_equal(alone.prompt_last, together.prompt_last)


def test_scoring_rebuilds_a_cache_that_cannot_be_trimmed(window: MlxBackend) -> None:
    """Scoring's options too (logprobs.py), and a decode after a deeper one."""
    with window.logprob_scope() as scope:
        scope.evaluate(PROMPT)
        together = scope.sequences(CONTINUATIONS, 512)
        deeper = [scope.step(0, 120), scope.step(1, 121), scope.step(0, 7)]
    for j, continuation in enumerate(CONTINUATIONS):
        with window.logprob_scope() as scope:
            scope.evaluate(PROMPT)
            assert scope.sequences([continuation], 512)[0] == together[j]
    with window.logprob_scope() as scope:
        scope.evaluate(PROMPT)
        assert np.array_equal(scope.step(0, 7), deeper[2])
