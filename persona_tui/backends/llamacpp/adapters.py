"""LoRA adapter GGUFs on a loaded llama.cpp model: checked, loaded once, applied or none.

`LlamaAdapters` is the llama.cpp backend's half of `backends.base.LoraAdapters`: the
backend holds its lock and says what to forget; this module checks an adapter file (a
bad one raises ModelLoadError naming it), loads each once, switches llama.cpp's active
adapter and frees them all on close.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

from persona_tui.backends.gguf_file import GGUFHeader, read_gguf_header
from persona_tui.backends.llamacpp.load import init_lora_adapter
from persona_tui.errors import ModelLoadError


class LlamaAdapters:
    """The adapters loaded onto one model (absolute path -> llama_adapter_lora pointer)
    and the one applied now (None: the untouched weights)."""

    def __init__(self, model_path: Path, header: GGUFHeader) -> None:
        self._model_path = model_path
        self._header = header
        self._loaded: dict[str, Any] = {}
        self.active: str | None = None

    def apply(self, llama: Any, key: str | None, forget: Callable[[], None]) -> None:
        """Apply the adapter at the absolute path `key` (None: none) to `llama`'s context.

        `forget` empties every cache once the adapter has changed (whatever happened):
        values computed with other weights are wrong. Raises ModelLoadError when the file
        is refused (nothing is forgotten then) or llama.cpp cannot apply it (no adapter is
        left applied).
        """
        import llama_cpp

        ctx = llama.ctx
        if key is None:
            code = llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
        else:
            adapter = self._loaded.get(key) or self._load(llama, Path(key))
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(1.0)
            code = llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales)
        # Whatever happened, nothing cached may be reused.
        forget()
        if code != 0:
            self.active = None
            llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
            raise ModelLoadError(
                f"llama.cpp could not apply the LoRA adapter {key} to "
                f"{self._model_path.name} (code {code})"
            )
        self.active = key

    def _load(self, llama: Any, path: Path) -> Any:
        """Check and load the adapter file at `path` once."""
        try:
            header = read_gguf_header(path)
        except ModelLoadError as error:
            raise ModelLoadError(f"LoRA adapter {path}: {error}") from None
        kind = (header.get_str("general.type"), header.get_str("adapter.type"))
        if kind != ("adapter", "lora"):
            raise ModelLoadError(
                f"{path} is not a LoRA adapter GGUF (general.type = {kind[0]!r}, adapter.type "
                f"= {kind[1]!r}); give the adapter.gguf that `persona-tui train` wrote"
            )
        if header.architecture != self._header.architecture:
            raise ModelLoadError(
                f"the LoRA adapter {path} is for a {header.architecture!r} model, but "
                f"{self._model_path.name} is {self._header.architecture!r}; train it on this "
                "model"
            )
        adapter, said = init_lora_adapter(llama, path)
        if not adapter:
            raise ModelLoadError(
                f"llama.cpp could not load the LoRA adapter {path} onto {self._model_path.name}"
                f"{f' ({said})' if said else ''}: it was probably trained on another base "
                "model (its tensors do not match); train it on this model"
            )
        self._loaded[str(path)] = adapter
        return adapter

    def loaded(self, key: str) -> Any:
        """The llama_adapter_lora pointer of the adapter loaded from `key`."""
        return self._loaded[key]

    def free(self, llama: Any) -> None:
        """Take every adapter off `llama`'s context and free them (closing the model)."""
        import llama_cpp

        if self._loaded:
            llama_cpp.llama_set_adapters_lora(llama.ctx, None, 0, None)
        for adapter in self._loaded.values():
            llama_cpp.llama_adapter_lora_free(adapter)
        self._loaded.clear()
        self.active = None
