"""Loading a model: what the user typed (or a session recorded) → a loaded backend.

`load_model` resolves a reference and loads it; the CLI and the app both load through
it. Which code runs a backend name is backends/registry.py's (engines are imported there,
lazily, so `import persona_tui` stays light); this module names no engine class.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from persona_tui.backend_names import AUTO, MLX
from persona_tui.backends.base import Backend
from persona_tui.backends.detect import detect_backend, mlx_platform_note
from persona_tui.backends.registry import engine_names, load_engine
from persona_tui.errors import ModelLoadError
from persona_tui.models.config import Config
from persona_tui.models.discovery import demo_model_path, resolve_model
from persona_tui.models.refs import ModelRef

# How a note names a load option the user gave (the command-line flag or config key).
_OPTION_FLAGS = {"n_threads": "--threads", "repack": "--repack"}


def load_backend(
    ref: ModelRef,
    *,
    n_threads: int | None = None,
    repack: str | None = None,
    asked: frozenset[str] = frozenset(),
) -> Backend:
    """Load `ref` with its backend's engine (backends/registry.py).

    `n_threads` and `repack` override the ref's own settings (e.g. a command-line flag).
    Each engine gets only the load options it declares; one it does not take that the
    user asked for (`asked`, or the ref's own `threads`) is reported on stderr, one line,
    and ignored; a config-wide default is dropped silently.
    """
    threads = n_threads if n_threads is not None else ref.n_threads
    repack = repack or ref.repack or "auto"
    # A discovered demo ref may point at a file not assembled yet: assemble (and verify) it.
    location = str(demo_model_path()) if ref.source == "demo" else str(ref.path)
    backend = detect_backend(location) if ref.backend == AUTO else ref.backend
    if backend not in engine_names():
        raise ModelLoadError(
            f"Model {ref.name!r} uses backend {backend!r}, which this version does not "
            f"support (supported: {', '.join((*engine_names(), AUTO))})."
        )
    options = {
        "n_ctx": ref.n_ctx,
        "n_threads": threads,
        "repack": repack,
        "api_key_env": ref.api_key_env,
    }
    if ref.n_threads is not None:
        asked = asked | {"n_threads"}
    loaded = load_engine(backend, location, options, asked)
    for option in loaded.ignored:
        print(
            f"persona-tui: {_OPTION_FLAGS.get(option, option)} does not apply to the "
            f"{backend} backend; ignored",
            file=sys.stderr,
        )
    return loaded.backend


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
    # Given here (a command-line flag), not a config-wide default.
    asked = frozenset(name for name, value in (("n_threads", threads), ("repack", repack)) if value)
    loaded = load_backend(
        ref,
        n_threads=threads or config.threads,
        repack=repack or ref.repack or config.repack,
        asked=asked,
    )
    note = mlx_platform_note() if loaded.info.backend == MLX else None
    if note:
        print(f"persona-tui: {note}", file=sys.stderr)
    return loaded
