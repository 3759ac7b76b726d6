"""Steering and activation reading for the llama.cpp backend (`Steering`, `HiddenStates`).

A mixin of `LlamaCppBackend` (backend.py), which holds the model and its lock. Steering
is llama.cpp's control vector (`llama_set_adapter_cvec`): one float32 array of n_embd
values per layer from layer 1 on (layer il at offset (il - 1) * n_embd), added to that
layer's output at every position of every decode of the context, so generation, batched
generation and scoring all see it. The same vector is set on the measurement context
(activations.py), so a steered condition's projections are measured in the model that
generated it. Changing it forgets every cache, as changing the LoRA adapter does.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import Any

from persona_tui.backends.base import HiddenStateMeans
from persona_tui.backends.llamacpp.activations import MeasurementContext
from persona_tui.backends.local import LocalBackend

# Prompts are measured in blocks of this many positions (batching.py), as they are scored.
MEASURE_BLOCK = 128


def control_vector(vectors: Mapping[int, Any], n_layers: int, n_embd: int) -> tuple[Any, int, int]:
    """llama.cpp's control-vector data for `vectors` (layer -> n_embd values): the float32
    array from layer 1 to the highest layer given, and the layers it applies to."""
    import numpy as np

    if not vectors:
        raise ValueError("steering needs at least one layer's vector (None: no steering)")
    for layer, vector in vectors.items():
        if not 1 <= int(layer) < n_layers:
            raise ValueError(
                f"cannot steer layer {layer}: control vectors apply to layers 1 to "
                f"{n_layers - 1} of this model"
            )
        width = np.asarray(vector).size
        if width != n_embd:
            raise ValueError(f"the vector for layer {layer} has {width} values, not {n_embd}")
    start, end = min(vectors), max(vectors)
    data = np.zeros((end, n_embd), dtype=np.float32)
    for layer, vector in vectors.items():
        values = np.asarray(vector, dtype=np.float32).reshape(n_embd)
        if not np.isfinite(values).all():
            raise ValueError(f"the vector for layer {layer} is not finite")
        data[int(layer) - 1] = values
    return data.reshape(-1), int(start), int(end)


class LlamaResidualStream(LocalBackend):
    """The residual-stream half of the llama.cpp backend (see the module docstring)."""

    _llama: Any
    _measurement: MeasurementContext | None
    _cvec: tuple[Any, int, int] | None
    _threads_now: int  # the threads generation runs on now (backend.py's governor)

    def _forget_evaluations(self) -> None:
        raise NotImplementedError

    def _active_adapter_pointer(self) -> Any:
        raise NotImplementedError

    def _measuring(self) -> MeasurementContext:
        """The measurement context (made on first use; the lock is held)."""
        if self._measurement is None:
            self._measurement = MeasurementContext(self._llama, MEASURE_BLOCK)
            self._measurement.sync(self._active_adapter_pointer(), self._cvec)
        return self._measurement

    @property
    def n_layers(self) -> int:
        import llama_cpp

        with self._lock:
            self._check_open()
            return int(llama_cpp.llama_model_n_layer(self._llama.model))

    @property
    def n_embd(self) -> int:
        import llama_cpp

        with self._lock:
            self._check_open()
            return int(llama_cpp.llama_model_n_embd(self._llama.model))

    def hidden_states(
        self,
        prompt: Sequence[int],
        continuations: Sequence[Sequence[int]],
        layers: Sequence[int],
    ) -> HiddenStateMeans:
        """Each wanted layer's output after `prompt` and over each continuation
        (backends.base.HiddenStates), read in the measurement context."""
        with self._lock:
            self._check_open()
            return self._measuring().measure(
                prompt, continuations, layers, self._n_ctx, self._threads_now
            )

    def use_steering(self, vectors: Mapping[int, Any] | None) -> None:
        """Add `vectors[il]` to layer il's output from now on (None: none)
        (backends.base.Steering). Every cache is forgotten when it changes."""
        import llama_cpp

        with self._lock:
            self._check_open()
            n_layers = int(llama_cpp.llama_model_n_layer(self._llama.model))
            n_embd = int(llama_cpp.llama_model_n_embd(self._llama.model))
            try:
                cvec = None if vectors is None else control_vector(vectors, n_layers, n_embd)
            except ValueError:
                self._set_cvec(None, n_embd)
                raise
            self._set_cvec(cvec, n_embd)

    def _set_cvec(self, cvec: tuple[Any, int, int] | None, n_embd: int) -> None:
        import llama_cpp

        ctx = self._llama.ctx
        if cvec is None:
            code = llama_cpp.llama_set_adapter_cvec(ctx, None, 0, n_embd, 0, 0)
        else:
            data, start, end = cvec
            pointer = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            code = llama_cpp.llama_set_adapter_cvec(ctx, pointer, data.size, n_embd, start, end)
        self._forget_evaluations()
        if code != 0:
            llama_cpp.llama_set_adapter_cvec(ctx, None, 0, n_embd, 0, 0)
            cvec = None
        self._cvec = cvec
        if self._measurement is not None:
            self._measurement.sync(self._active_adapter_pointer(), cvec)
        if code != 0:
            raise ValueError(f"llama.cpp refused the control vector (code {code})")
