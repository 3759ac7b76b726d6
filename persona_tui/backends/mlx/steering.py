"""Hooks on an MLX model's layers: steering vectors added to, and captures of, their outputs.

`LayerHooks.install` gives each of the model's transformer layers (`model.layers`, the
blocks mlx-lm's model classes call in order) a subclass of its own class whose `__call__`
runs the layer unchanged and then, when set, adds that layer's steering vector to its
output at every position, and, while a measurement captures, keeps the output. Only the
layer object's class changes: its parameters, module paths and submodules are those it was
loaded with, so LoRA adapters (adapters.py) swap in and out as before, and with no vector
set a layer returns its own output object untouched: exactly the unsteered numbers.

Installed once at load, the hooks are seen by everything that runs the model: one-by-one
generation (mlx-lm's generate_step), batched generation (its BatchGenerator), scoring
(logprobs.py) and hidden-state measurement (activations.py). Layer `il`'s output is the
residual stream after that block (llama.cpp's `l_out-il`, transformers'
`hidden_states[il + 1]`), where llama.cpp's control vectors add theirs too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from persona_tui.errors import GenerationError


class LayerHooks:
    """The steering vectors (layer → mx.array) and the capture of one model's layers; not
    thread-safe (the backend's lock guards it)."""

    def __init__(self, n_layers: int, problem: str | None = None) -> None:
        self.n_layers = n_layers
        self.problem = problem  # why the layers could not be hooked (None: hooked)
        self.vectors: dict[int, Any] = {}
        self._captured: dict[int, list[Any]] | None = None

    @classmethod
    def install(cls, model: Any) -> LayerHooks:
        """Hook every layer of `model` (an mlx-lm model); a model without a `layers` list
        of modules gets hooks that refuse to steer or measure, saying why."""
        layers = getattr(model, "layers", None)
        if not isinstance(layers, list) or not layers:
            kind = type(model).__name__
            return cls(0, f"the MLX model class {kind} exposes no list of layers to hook")
        hooks = cls(len(layers))
        for index, layer in enumerate(layers):
            layer.__class__ = _hooked_class(type(layer), hooks, index)
        return hooks

    def check_usable(self) -> None:
        """Raise GenerationError when the model's layers could not be hooked."""
        if self.problem is not None:
            raise GenerationError(
                f"{self.problem}, so this backend cannot read or steer its residual stream"
            )

    def after_layer(self, index: int, output: Any) -> Any:
        """The output layer `index` passes on: its own, plus its steering vector."""
        vector = self.vectors.get(index)
        captured = self._captured
        if vector is None and (captured is None or index not in captured):
            return output
        import mlx.core as mx

        if not isinstance(output, mx.array):
            raise GenerationError(
                f"layer {index} of this MLX model returns {type(output).__name__}, not one "
                "array, so its output cannot be read or steered"
            )
        if vector is not None:
            output = output + (
                vector if vector.dtype == output.dtype else vector.astype(output.dtype)
            )
        if captured is not None and index in captured:
            captured[index].append(output)
        return output

    @contextlib.contextmanager
    def capture(self, layers: Sequence[int]) -> Iterator[dict[int, list[Any]]]:
        """While inside, every forward pass appends each of `layers`' outputs (B, L, D) to
        the dict's list for that layer (the caller empties the lists between passes)."""
        self._captured = {layer: [] for layer in layers}
        try:
            yield self._captured
        finally:
            self._captured = None

    def same_vectors(self, vectors: Mapping[int, Any]) -> bool:
        """Whether `vectors` (checked, mx arrays) are exactly the ones set now."""
        import mlx.core as mx

        if set(vectors) != set(self.vectors):
            return False
        return all(mx.array_equal(vectors[il], self.vectors[il]).item() for il in vectors)


def _hooked_class(base: type, hooks: LayerHooks, index: int) -> type:
    """A subclass of the layer's class (same name) whose call goes through `hooks`."""

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        return hooks.after_layer(index, base.__call__(self, *args, **kwargs))

    return type(base.__name__, (base,), {"__call__": __call__, "__module__": base.__module__})


def checked_vectors(
    vectors: Mapping[int, Any] | None, n_layers: int, n_embd: int
) -> dict[int, Any]:
    """`vectors` as float32 mx arrays by layer ({} for None or an empty mapping).

    Raises ValueError for a layer outside 1 .. n_layers - 1 (llama.cpp's control-vector
    layers), a vector that is not n_embd finite numbers, or something not a mapping."""
    import mlx.core as mx
    import numpy as np

    if vectors is None:
        return {}
    if not isinstance(vectors, Mapping):
        raise ValueError(f"steering vectors must be a mapping layer -> vector, not {vectors!r}")
    checked: dict[int, Any] = {}
    for layer, vector in vectors.items():
        if not isinstance(layer, int | np.integer) or isinstance(layer, bool):
            raise ValueError(f"steering layer {layer!r} is not an integer")
        if not 1 <= int(layer) <= n_layers - 1:
            raise ValueError(
                f"steering layer {layer} is out of range: this model steers layers 1 .. "
                f"{n_layers - 1} (as llama.cpp's control vectors number them)"
            )
        try:
            values = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"the steering vector of layer {layer} is not numbers ({error})"
            ) from None
        if values.shape != (n_embd,):
            raise ValueError(
                f"the steering vector of layer {layer} has shape {values.shape}; this model's "
                f"residual stream is {n_embd} wide, so it must be ({n_embd},)"
            )
        if not np.isfinite(values).all():
            raise ValueError(f"the steering vector of layer {layer} holds NaN or infinity")
        checked[int(layer)] = mx.array(values)
    return checked
