"""Loading the model of a run (or of an extraction): the one place run/ loads a model.

`load_model` resolves the reference through the config and loads it with the engine the
registry gives; a test or the app passes a `loader` instead (a scripted backend).
"""

from __future__ import annotations

from collections.abc import Callable

from persona_tui.backends.base import Backend
from persona_tui.models.config import Config
from persona_tui.models.load import load_model
from persona_tui.run.events import EventCallback, ModelLoaded, ModelLoading

# How a caller loads a model reference: (reference, config, backend name or AUTO).
ModelLoader = Callable[[str, Config, str], Backend]


def load_run_model(
    ref: str,
    config: Config,
    on_event: EventCallback,
    *,
    backend: str,
    threads: int | None,
    repack: str | None,
    loader: ModelLoader | None = None,
) -> Backend:
    """Load `ref` with `backend` (a name or AUTO), `threads` and `repack` (or `loader`),
    reporting `ModelLoading` and `ModelLoaded`."""
    on_event(ModelLoading(ref))
    if loader is not None:
        loaded = loader(ref, config, backend)
    else:
        loaded = load_model(ref, config, threads, backend, repack)
    on_event(ModelLoaded(loaded.info))
    return loaded
