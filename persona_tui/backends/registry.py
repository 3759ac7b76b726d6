"""The engines, by name: how each is loaded, which load options it takes, what else it offers.

An engine registers itself here with `@engine(name, options=...)` on a small factory that
imports its backend class only when called (as Inspect's model providers do), so an
engine's dependency (llama_cpp, mlx, an HTTP client) is imported only when that engine is
used. This module is the one way into the engine packages (`backends.llamacpp`,
`backends.mlx`, `backends.openai`) from the rest of persona-tui; an import-linter contract
in pyproject.toml keeps it so.

Each engine declares the load options it takes (`n_ctx`, `n_threads`, `repack`,
`api_key_env` ...); `load_engine` passes it those only. An option it does not declare is
left out: silently when it came from a default, and reported in `LoadedEngine.ignored`
when the user asked for it (the caller says which options were asked for and words the
note).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_tui.backend_names import LLAMA_CPP, MLX, OPENAI
from persona_tui.backends.base import Backend
from persona_tui.errors import ModelLoadError

if TYPE_CHECKING:
    from persona_tui.backends.llamacpp.canary import CanaryResult as CanaryResult

# The factory registered for an engine: returns its backend class, importing it then.
EngineFactory = Callable[[], Any]


@dataclass(frozen=True)
class Engine:
    """A registered engine: its name, the factory of its backend class, its load options."""

    name: str
    factory: EngineFactory
    options: frozenset[str]

    def backend_class(self) -> Any:
        """The backend class (imported now): `load(location, **options)` builds one."""
        return self.factory()


_ENGINES: dict[str, Engine] = {}


def engine(name: str, *, options: tuple[str, ...] = ()) -> Callable[[EngineFactory], EngineFactory]:
    """Register the decorated factory as the engine `name`, taking the load `options`."""

    def register(factory: EngineFactory) -> EngineFactory:
        if name in _ENGINES:
            raise ValueError(f"engine {name!r} is registered twice")
        _ENGINES[name] = Engine(name, factory, frozenset(options))
        return factory

    return register


def engine_names() -> tuple[str, ...]:
    """The registered engines' names, in registration order."""
    return tuple(_ENGINES)


def get_engine(name: str) -> Engine:
    """The engine registered as `name`; ModelLoadError listing the supported ones if none."""
    found = _ENGINES.get(name)
    if found is None:
        raise ModelLoadError(
            f"backend {name!r} is not one this version supports "
            f"(supported: {', '.join(engine_names())})"
        )
    return found


@dataclass(frozen=True)
class LoadedEngine:
    """A loaded backend, and the options asked for that its engine does not take."""

    backend: Backend
    ignored: tuple[str, ...]


def load_engine(
    name: str,
    location: str | Path,
    options: Mapping[str, Any],
    asked: frozenset[str] = frozenset(),
) -> LoadedEngine:
    """Load `location` with the engine `name`, passing the `options` it declares.

    `asked` names the options the user gave explicitly (a command-line flag, an alias's
    own setting): those the engine does not declare are returned in `ignored`; the others
    (config-wide defaults) are dropped silently.
    """
    found = get_engine(name)
    accepted = {key: value for key, value in options.items() if key in found.options}
    ignored = tuple(sorted(key for key in options if key in asked and key not in found.options))
    backend = found.backend_class().load(location, **accepted)
    return LoadedEngine(backend, ignored)


# ------------------------------------------------------------------------ engines


@engine(LLAMA_CPP, options=("n_ctx", "n_threads", "repack"))
def llama_cpp() -> Any:
    """GGUF files through llama-cpp-python (backends/llamacpp)."""
    from persona_tui.backends.llamacpp.backend import LlamaCppBackend

    return LlamaCppBackend


@engine(MLX, options=("n_ctx",))
def mlx() -> Any:
    """MLX model folders through mlx-lm (backends/mlx); MLX picks its own threads."""
    from persona_tui.backends.mlx.backend import MlxBackend

    return MlxBackend


@engine(OPENAI, options=("n_ctx", "api_key_env"))
def openai() -> Any:
    """An OpenAI-compatible server (backends/openai); the server picks its threads."""
    from persona_tui.backends.openai.backend import OpenAIBackend

    return OpenAIBackend


# ------------------------------------------------------- what only some engines offer


@contextlib.contextmanager
def open_tokenizer(name: str, location: str | Path) -> Iterator[Backend]:
    """The model's tokenizer and chat template, closed afterwards: without its weights
    where the engine can (llama.cpp's `vocab_only`), else the loaded model (MLX: mlx-lm
    loads a folder whole). The backend offers `logprob_scope().tokenize`/`.continuation`,
    `render_chat` and `end_of_turn_token` (backends.base.EndOfTurnToken); no generation
    on a vocabulary-only one."""
    if name == LLAMA_CPP:
        with llama_cpp().vocabulary(Path(location)) as vocabulary:
            yield vocabulary
        return
    if name != MLX:
        get_engine(name)  # an unknown name: the error listing the supported ones
        raise ModelLoadError(f"the {name} backend offers no local tokenizer")
    backend = mlx().load(location)
    try:
        yield backend
    finally:
        backend.close()


def run_llama_cpp_canary(target: Path, *, repack: str, n_threads: int | None) -> CanaryResult:
    """llama.cpp's first contact with this machine, in a child process (`doctor`)."""
    from persona_tui.backends.llamacpp.canary import run_canary

    return run_canary(target, repack=repack, n_threads=n_threads)
