"""Loading a model: the single place that maps a backend name to its implementation.

Engines are imported here, lazily, so `import persona_tui` stays light.
"""

from __future__ import annotations

from pathlib import Path

from persona_tui.backends.base import Backend
from persona_tui.backends.detect import detect_backend
from persona_tui.errors import ModelLoadError
from persona_tui.models.discovery import demo_model_path
from persona_tui.models.refs import AUTO, LLAMA_CPP, MLX, OPENAI, ModelRef


def load_backend(
    ref: ModelRef, *, n_threads: int | None = None, repack: str | None = None
) -> Backend:
    """Load `ref` with its backend: the single place that maps a backend name to code.

    `n_threads` and `repack` override the ref's own settings (e.g. a command-line flag).
    Engines are imported here, lazily, so `import persona_tui` stays light.
    """
    threads = n_threads if n_threads is not None else ref.n_threads
    repack = repack or ref.repack or "auto"
    # A discovered demo ref may point at a file not assembled yet: assemble (and verify) it.
    location = str(demo_model_path()) if ref.source == "demo" else str(ref.path)
    backend = detect_backend(location) if ref.backend == AUTO else ref.backend
    if backend == LLAMA_CPP:
        from persona_tui.backends.llamacpp.backend import LlamaCppBackend

        return LlamaCppBackend.load(
            Path(location), n_ctx=ref.n_ctx, n_threads=threads, repack=repack
        )
    if backend == MLX:
        from persona_tui.backends.mlx.backend import MlxBackend

        return MlxBackend.load(location, n_ctx=ref.n_ctx, n_threads=threads)
    if backend == OPENAI:
        from persona_tui.backends.openai.backend import OpenAIBackend

        return OpenAIBackend.load(
            location, api_key_env=ref.api_key_env, n_ctx=ref.n_ctx, n_threads=threads
        )
    raise ModelLoadError(
        f"Model {ref.name!r} uses backend {backend!r}, which this version does not "
        f"support (supported: {LLAMA_CPP}, {MLX}, {OPENAI}, {AUTO})."
    )
