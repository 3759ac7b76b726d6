"""Each layer's output read from llama.cpp while it evaluates text (`HiddenStates`).

llama.cpp has no public per-layer hidden-state API. Its graph scheduler calls an eval
callback (`cb_eval` in the context parameters) for each graph tensor, first asking whether
the caller wants it, then with its data computed; a layer's output, the residual stream
after the layer (including a control vector added there), is the tensor `l_out-N`. The
callback reads it with ggml's exported functions (`ggml_get_name`, `ggml_nelements`,
`ggml_nrows`, `ggml_nbytes`, `ggml_backend_tensor_get`), so nothing depends on the
`ggml_tensor` struct layout of the build.

The callback is fixed when a context is created, and asking it about every tensor costs
a Python call per graph node; so the measurement has a context of its own
(`MeasurementContext`), made from the loaded model on first use: generation and scoring
run in the main context at full speed and are never touched by a measurement. The
measurement context gets the main context's parameters, the adapter applied there and its
steering (`sync`), so it measures the model that generates.

A prompt is evaluated in the batch plan of batching.py and the previous measured prompt's
KV cells are reused up to a batch end both plans share, so a value never depends on what
was measured before. Each continuation is then decoded after the prompt as the only
sequence, and its cells removed. In the last layer llama.cpp keeps only the rows whose
output is requested; they are requested only when the last layer is asked for (it costs
the output projection).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from persona_tui.backends.base import HiddenStateMeans
from persona_tui.backends.llamacpp.batching import batch_ends, reusable_prefix
from persona_tui.errors import GenerationError, PromptTooLongError

_GGML: Any = None


def _ggml() -> Any:
    """ggml's base library with the signatures the callback uses (set once)."""
    global _GGML
    if _GGML is None:
        import llama_cpp._ggml as ggml

        lib = ggml.libggml
        lib.ggml_get_name.restype = ctypes.c_char_p
        lib.ggml_get_name.argtypes = [ctypes.c_void_p]
        for name in ("ggml_nelements", "ggml_nrows"):
            getattr(lib, name).restype = ctypes.c_int64
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.ggml_nbytes.restype = ctypes.c_size_t
        lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_tensor_get.restype = None
        lib.ggml_backend_tensor_get.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
        ]
        _GGML = lib
    return _GGML


class LayerTap:
    """The eval callback: copies the rows of the wanted layers' `l_out-N` tensors.

    `rows[il]` collects, decode by decode and micro-batch by micro-batch, the float32 rows
    of layer il's output in batch order. An exception inside the callback cannot cross
    into C: it is kept in `failure` and the computation told to stop.
    """

    def __init__(self) -> None:
        import llama_cpp

        self._lib = _ggml()
        self.wanted: dict[bytes, int] = {}
        self.rows: dict[int, list[Any]] = {}
        self.failure: BaseException | None = None
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._call)

    def want(self, layers: Sequence[int]) -> None:
        self.wanted = {f"l_out-{il}".encode(): il for il in layers}
        self.clear()

    def clear(self) -> None:
        self.rows = {il: [] for il in self.wanted.values()}
        self.failure = None

    def _call(self, tensor: Any, ask: bool, _user_data: Any) -> bool:
        try:
            layer = self.wanted.get(self._lib.ggml_get_name(tensor))
            if ask:
                return layer is not None
            if layer is None:
                return True
            self.rows[layer].append(self._copy(tensor))
            return True
        except BaseException as error:
            self.failure = error
            return False

    def _copy(self, tensor: Any) -> Any:
        import numpy as np

        lib = self._lib
        count = int(lib.ggml_nelements(tensor))
        rows = int(lib.ggml_nrows(tensor))
        size = int(lib.ggml_nbytes(tensor))
        if rows == 0:
            return np.zeros((0, 0), dtype=np.float32)
        if size != count * 4:
            raise GenerationError(f"a layer output is not float32 ({size} bytes, {count} values)")
        data = np.empty(count, dtype=np.float32)
        lib.ggml_backend_tensor_get(tensor, data.ctypes.data, 0, size)
        return data.reshape(rows, count // rows)

    def take(self, layer: int, n_embd: int) -> Any:
        """The rows of `layer` collected since `clear`, as one (rows, n_embd) array."""
        import numpy as np

        parts = [part for part in self.rows.get(layer, []) if part.shape[0]]
        if not parts:
            return np.zeros((0, n_embd), dtype=np.float32)
        return np.concatenate(parts)


class MeasurementContext:
    """A second llama.cpp context on the loaded model, with the layer tap as its callback."""

    def __init__(self, llama: Any, block: int) -> None:
        import llama_cpp

        self._llama = llama
        self._block = block
        self.n_layers = int(llama_cpp.llama_model_n_layer(llama.model))
        self.n_embd = int(llama_cpp.llama_model_n_embd(llama.model))
        self._tap = LayerTap()
        self._ctx: Any = None
        self._batch: Any = None
        self._tokens: list[int] = []  # the prompt whose KV cells are kept
        self._ends: tuple[int, ...] = ()
        self._adapter: Any = None  # what `sync` applied last
        self._cvec: tuple[Any, int, int] | None = None
        self._synced = False

    def _open(self) -> Any:
        import llama_cpp

        if self._ctx is None:
            main = self._llama.context_params
            params = llama_cpp.llama_context_params.from_buffer_copy(main)
            params.n_seq_max = 1
            params.cb_eval = self._tap.callback
            ctx = llama_cpp.llama_init_from_model(self._llama.model, params)
            if not ctx:
                raise GenerationError("llama.cpp could not create a context to read activations")
            self._ctx = ctx
            self.n_batch = int(llama_cpp.llama_n_batch(ctx))
            self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
            self._synced = False
        if not self._synced:
            self._apply()
        return self._ctx

    def sync(self, adapter: Any, cvec: tuple[Any, int, int] | None) -> None:
        """Mirror the main context: the LoRA adapter pointer (None: none) and the control
        vector (data, il_start, il_end; None: none). Cached KV cells are forgotten."""
        self._adapter, self._cvec = adapter, cvec
        self._synced = False
        if self._ctx is not None:
            self._apply()

    def _apply(self) -> None:
        import llama_cpp

        ctx = self._ctx
        if self._adapter is None:
            code = llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
        else:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapter)
            scales = (ctypes.c_float * 1)(1.0)
            code = llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales)
        if code == 0:
            if self._cvec is None:
                code = llama_cpp.llama_set_adapter_cvec(ctx, None, 0, self.n_embd, 0, 0)
            else:
                data, start, end = self._cvec
                code = llama_cpp.llama_set_adapter_cvec(
                    ctx, data.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), data.size,
                    self.n_embd, start, end,
                )  # fmt: skip
        self._forget()
        if code != 0:
            raise GenerationError(
                f"llama.cpp could not apply the adapter or steering to the measurement "
                f"context (code {code})"
            )
        self._synced = True

    def _forget(self) -> None:
        import llama_cpp

        if self._ctx is not None:
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
        self._tokens, self._ends = [], ()

    def measure(
        self,
        prompt: Sequence[int],
        continuations: Sequence[Sequence[int]],
        layers: Sequence[int],
        n_ctx: int,
        threads: int,
    ) -> HiddenStateMeans:
        import llama_cpp
        import numpy as np

        wanted = tuple(int(il) for il in layers)
        for il in wanted:
            if not 0 <= il < self.n_layers:
                raise ValueError(f"layer {il} is out of range: the model has {self.n_layers}")
        if not prompt:
            raise ValueError("hidden_states needs a prompt of at least one token")
        longest = max((len(c) for c in continuations), default=0)
        if len(prompt) + longest > n_ctx:
            raise PromptTooLongError(
                f"the prompt ({len(prompt)} tokens) and its longest continuation ({longest}) "
                f"do not fit the model's context of {n_ctx} tokens"
            )
        ctx = self._open()
        llama_cpp.llama_set_n_threads(ctx, threads, threads)
        last_wanted = self.n_layers - 1 in wanted
        self._tap.want(wanted)
        ends = batch_ends(len(prompt), self._block)
        keep = reusable_prefix(self._tokens, self._ends, prompt, ends)
        self._tokens, self._ends = [], ()
        self._remove_from(keep)
        self._tap.clear()
        start = keep
        for end in ends:
            if end <= keep:
                continue
            self._decode(ctx, prompt[start:end], start, last_row=end == len(prompt))
            start = end
        self._tokens, self._ends = list(prompt), ends
        prompt_last = np.stack([self._tap.take(il, self.n_embd)[-1] for il in wanted])
        base = len(prompt)
        means = np.zeros((len(continuations), len(wanted), self.n_embd), dtype=np.float64)
        for j, continuation in enumerate(continuations):
            if not continuation:
                continue
            self._tap.clear()
            try:
                for begin in range(0, len(continuation), self.n_batch):
                    chunk = continuation[begin : begin + self.n_batch]
                    self._decode(ctx, chunk, base + begin, all_rows=last_wanted)
            finally:
                self._remove_from(base)
            for k, il in enumerate(wanted):
                rows = self._tap.take(il, self.n_embd)
                if rows.shape[0] != len(continuation):
                    raise GenerationError(
                        f"layer {il} gave {rows.shape[0]} rows for {len(continuation)} tokens"
                    )
                means[j, k] = rows.astype(np.float64).mean(axis=0)
        return HiddenStateMeans(
            layers=wanted,
            prompt_last=prompt_last.astype(np.float64),
            means=means,
            counts=tuple(len(c) for c in continuations),
        )

    def _decode(
        self,
        ctx: Any,
        tokens: Sequence[int],
        start: int,
        *,
        last_row: bool = False,
        all_rows: bool = False,
    ) -> None:
        """Decode `tokens` at positions from `start` in sequence 0, requesting the output
        of the last row or of all rows (the last layer keeps only those rows)."""
        import llama_cpp

        batch = self._batch
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = all_rows or (last_row and i == len(tokens) - 1)
        code = llama_cpp.llama_decode(ctx, batch)
        if self._tap.failure is not None:
            raise GenerationError(f"reading activations failed: {self._tap.failure}")
        if code != 0:
            raise GenerationError(f"llama_decode returned {code} while reading activations")

    def _remove_from(self, position: int) -> None:
        import llama_cpp

        if self._ctx is not None:
            memory = llama_cpp.llama_get_memory(self._ctx)
            llama_cpp.llama_memory_seq_rm(memory, -1, position, -1)

    def close(self) -> None:
        import llama_cpp

        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
