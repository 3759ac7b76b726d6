"""The MLX backend's residual stream: hidden states read, steering vectors applied.

`MlxResidualStream` is a mixin of `MlxBackend` (backend.py), which holds the model, the
lock, the prompt cache and the layer hooks (steering.py). It implements
backends.base.HiddenStates and backends.base.Steering.

`measure_hidden_states` runs the model itself (its own forward pass, so every architecture's
masks, caches and positions are mlx-lm's) while the hooks capture the wanted layers'
outputs: the prompt into a fresh cache, in the fixed tiling scoring uses (logprobs.py), so
a value depends on the prompt alone; then each continuation in one pass after the prompt,
the cache trimmed back to the prompt after each (or the prompt evaluated again, for a cache
that cannot be trimmed), so each is seen as if alone. The logits are never evaluated (MLX
is lazy: the final norm and output projection are not computed).
Outputs are read as float32 and averaged in float64 with numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from persona_tui.backends.base import HiddenStateMeans
from persona_tui.backends.local import LocalBackend, engine_failures
from persona_tui.backends.mlx.logprobs import PROMPT_CHUNK
from persona_tui.backends.mlx.prompt_cache import MlxPromptCache
from persona_tui.backends.mlx.steering import LayerHooks, checked_vectors
from persona_tui.errors import GenerationError, PromptTooLongError

# The exceptions MLX raises when a computation fails (as batch_runner.MLX_ERRORS).
_MLX_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, ValueError, OSError, MemoryError)


class MlxResidualStream(LocalBackend):
    """HiddenStates and Steering for the MLX backend (see the module docstring)."""

    _model: Any
    _config: dict[str, Any]
    _prompts: MlxPromptCache
    _hooks: LayerHooks

    @property
    def n_layers(self) -> int:
        """The number of transformer layers (valid layers: 0 .. n_layers - 1)."""
        return self._hooks.n_layers

    @property
    def n_embd(self) -> int:
        """The width of the residual stream (the model's hidden size)."""
        return residual_width(self._model, self._config)

    def hidden_states(
        self,
        prompt: Sequence[int],
        continuations: Sequence[Sequence[int]],
        layers: Sequence[int],
    ) -> HiddenStateMeans:
        """Each of `layers`' outputs at the prompt's last token and averaged over each
        continuation's tokens (backends.base.HiddenStates), with the adapter and steering
        applied now. Uses its own cache: generation and scoring are left as they were."""
        with self._lock:
            self._check_open()
            self._hooks.check_usable()
            wanted = check_layers(layers, self.n_layers)
            check_texts(prompt, continuations, self._n_ctx)
            with engine_failures(
                lambda error: (
                    f"MLX failed while reading hidden states of {self._model_name}: {error}"
                ),
                lambda: None,
                _MLX_ERRORS,
            ):
                return measure_hidden_states(
                    self._model,
                    self._hooks,
                    prompt,
                    continuations,
                    wanted,
                    n_ctx=self._n_ctx,
                    n_embd=self.n_embd,
                )

    def use_steering(self, vectors: Mapping[int, Any] | None) -> None:
        """Add `vectors[il]` to layer il's output from the next evaluation on, in
        generation, batched generation, scoring and measurement; None: none
        (backends.base.Steering). Switching forgets the prompt cache (the scoring scope
        keeps none between holds). A bad layer or width raises ValueError and leaves
        steering off."""
        with self._lock:
            self._check_open()
            checked: dict[int, Any] = {}  # None or {}: no steering, possible on any model
            if not (vectors is None or (isinstance(vectors, Mapping) and not vectors)):
                self._hooks.check_usable()
                try:
                    checked = checked_vectors(vectors, self.n_layers, self.n_embd)
                except ValueError:
                    if self._hooks.vectors:
                        self._hooks.vectors = {}
                        self._prompts.drop()
                    raise
            if self._hooks.same_vectors(checked):
                return
            self._hooks.vectors = checked
            self._prompts.drop()  # computed with another residual stream


def residual_width(model: Any, config: Mapping[str, Any]) -> int:
    """The model's hidden size: its args' `hidden_size`, else config.json's (or its
    `text_config`'s, for a multimodal folder)."""
    width = getattr(getattr(model, "args", None), "hidden_size", None)
    if width is None:
        text = config.get("text_config")
        width = config.get("hidden_size") or (text.get("hidden_size") if text else None)
    if not isinstance(width, int) or width <= 0:
        raise GenerationError("this MLX model's config gives no hidden_size")
    return width


def check_layers(layers: Sequence[int], n_layers: int) -> tuple[int, ...]:
    """`layers` as a tuple of ints, each 0 .. n_layers - 1, else ValueError."""
    import numpy as np

    checked = []
    for layer in layers:
        if not isinstance(layer, int | np.integer) or isinstance(layer, bool):
            raise ValueError(f"layer {layer!r} is not an integer")
        if not 0 <= int(layer) < n_layers:
            raise ValueError(
                f"layer {layer} is out of range: this model's layers are 0 .. {n_layers - 1}"
            )
        checked.append(int(layer))
    return tuple(checked)


def check_texts(
    prompt: Sequence[int], continuations: Sequence[Sequence[int]], n_ctx: int
) -> tuple[list[int], list[list[int]]]:
    """The tokens as lists; ValueError for an empty prompt, PromptTooLongError when the
    prompt and the longest continuation do not fit `n_ctx`."""
    tokens = [int(t) for t in prompt]
    options = [[int(t) for t in c] for c in continuations]
    if not tokens:
        raise ValueError("hidden states need a prompt of at least one token")
    longest = max((len(c) for c in options), default=0)
    if len(tokens) + longest > n_ctx:
        raise PromptTooLongError(
            f"the prompt ({len(tokens)} tokens) and a continuation of {longest} tokens do "
            f"not fit the model's context of {n_ctx} tokens; use a larger n_ctx or shorter "
            "texts"
        )
    return tokens, options


def measure_hidden_states(
    model: Any,
    hooks: LayerHooks,
    prompt: Sequence[int],
    continuations: Sequence[Sequence[int]],
    layers: tuple[int, ...],
    *,
    n_ctx: int,
    n_embd: int,
) -> HiddenStateMeans:
    """See the module docstring and backends.base.HiddenStateMeans. An empty continuation
    has count 0 and a mean of zeros (as on llama.cpp: no position to average over)."""
    import numpy as np

    tokens, options = check_texts(prompt, continuations, n_ctx)
    wanted = sorted(set(layers))
    with hooks.capture(wanted) as captured:
        reader = _Reader(model, captured, wanted)
        last = reader.prompt(tokens)
        prompt_last = np.zeros((len(layers), n_embd), dtype=np.float64)
        for k, layer in enumerate(layers):
            prompt_last[k] = np.array(last[layer], dtype=np.float64)  # checks the width
        means = np.zeros((len(options), len(layers), n_embd), dtype=np.float64)
        after_prompt = True
        for j, option in enumerate(options):
            if not option:
                continue
            if not after_prompt and not reader.rewind(len(tokens)):
                reader.prompt(tokens)  # a cache that cannot be trimmed: evaluate it again
            rows = reader.forward(option, slice(None))
            after_prompt = False
            for k, layer in enumerate(layers):
                means[j, k] = np.array(rows[layer], dtype=np.float64).mean(axis=0)
    return HiddenStateMeans(
        layers=tuple(layers),
        prompt_last=prompt_last,
        means=means,
        counts=tuple(len(c) for c in options),
    )


class _Reader:
    """Runs the model on a cache of its own while the hooks capture `wanted` layers."""

    def __init__(self, model: Any, captured: dict[int, list[Any]], wanted: list[int]) -> None:
        self._model = model
        self._captured = captured
        self._wanted = wanted
        self._cache: list[Any] = []

    def prompt(self, tokens: list[int]) -> dict[int, Any]:
        """Evaluate `tokens` into a fresh cache, in scoring's fixed chunks; each wanted
        layer's output at the last token."""
        from mlx_lm.models.cache import make_prompt_cache

        self._cache = make_prompt_cache(self._model)
        last: dict[int, Any] = {}
        for start in range(0, len(tokens), PROMPT_CHUNK):
            last = self.forward(tokens[start : start + PROMPT_CHUNK], -1)
        return last

    def forward(self, part: list[int], rows: Any) -> dict[int, Any]:
        """Run `part` after the cache; each wanted layer's outputs at `rows` (float32)."""
        import mlx.core as mx

        for kept in self._captured.values():
            kept.clear()
        self._model(mx.array([part]), cache=self._cache)
        outputs = {
            layer: self._captured[layer][-1][0, rows].astype(mx.float32) for layer in self._wanted
        }
        mx.eval(list(outputs.values()), [c.state for c in self._cache])
        return outputs

    def rewind(self, position: int) -> bool:
        """Trim the cache back to `position` tokens; False when it cannot be trimmed (a
        sliding window that wrapped, a recurrent state)."""
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        if not can_trim_prompt_cache(self._cache):
            return False
        trim_prompt_cache(self._cache, int(self._cache[0].offset) - position)
        return all(int(c.offset) == position for c in self._cache)
