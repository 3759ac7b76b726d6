"""Loading a model: the single place that maps a backend name to its implementation.

`load_model` turns what the user typed (or a session recorded) into a loaded backend; the
CLI and the app both load through it. Engines are imported here, lazily, so
`import persona_tui` stays light.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from persona_tui.backend_names import AUTO, LLAMA_CPP, MLX, OPENAI
from persona_tui.backends.base import Backend
from persona_tui.backends.detect import detect_backend, mlx_platform_note
from persona_tui.errors import ModelLoadError
from persona_tui.models.config import Config
from persona_tui.models.discovery import demo_model_path, resolve_model
from persona_tui.models.refs import ModelRef


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


def load_model(
    ref_text: str,
    config: Config,
    threads: int | None,
    backend: str = AUTO,
    repack: str | None = None,
) -> Backend:
    """Resolve a model reference ("demo", an alias, a path, `openai:URL#MODEL`) and load it.

    `backend` other than "auto" overrides what the reference or its detection says;
    `repack` (llama.cpp) overrides the alias's and the config's setting.
    """
    ref = resolve_model(ref_text, config.models)
    if backend != AUTO:
        ref = replace(ref, backend=backend)
    loaded = load_backend(
        ref, n_threads=threads or config.threads, repack=repack or ref.repack or config.repack
    )
    note = mlx_platform_note() if loaded.info.backend == MLX else None
    if note:
        print(f"persona-tui: {note}", file=sys.stderr)
    return loaded
