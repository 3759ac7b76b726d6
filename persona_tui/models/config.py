"""The user's config file (`config.toml` in the platformdirs config folder).

```toml
default_model = "demo"          # an alias below, "demo", or a path
annotator = "ada"               # name recorded with every annotation
theme = "persona-dark"          # a theme name (built-in or user)
threads = 2                     # llama.cpp threads (default: physical cores)
repack = "auto"                 # llama.cpp weight repacking/AMX: auto (default), on, off

[models.qwen]
path = "~/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"
backend = "llama.cpp"           # optional: "auto" (default), "llama.cpp", "mlx", "openai"
n_ctx = 4096                    # optional context size
threads = 4                     # optional, overrides the global setting
repack = "off"                  # optional, overrides the global setting
```
A missing file is fine (all defaults); an invalid one is a ConfigError naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from persona_tui import paths
from persona_tui._util.atomic import atomic_write_text
from persona_tui._util.tables import Problems, TableReader, closest
from persona_tui._util.textdata import loads_toml
from persona_tui._util.toml_scan import KeyPath, format_key_path
from persona_tui.backend_names import BACKEND_CHOICES
from persona_tui.errors import ConfigError
from persona_tui.models.refs import ModelRef

BACKENDS = BACKEND_CHOICES
REPACK = ("auto", "on", "off")
_TOP_KEYS = ("default_model", "annotator", "theme", "threads", "repack", "models")
_MODEL_KEYS = (
    "path",
    "backend",
    "n_ctx",
    "threads",
    "repack",
    "base_url",
    "model",
    "api_key_env",
)


@dataclass(frozen=True)
class Config:
    default_model: str = "demo"
    annotator: str = ""
    theme: str = "persona-dark"
    threads: int | None = None
    repack: str = "auto"
    models: Mapping[str, ModelRef] = field(default_factory=dict)
    path: Path | None = None


def _unknown_key(path: KeyPath, key: str, allowed: Sequence[str]) -> tuple[KeyPath, str]:
    close = closest(key, allowed)
    hint = f"; did you mean '{close}'?" if close else f"; allowed keys: {', '.join(allowed)}"
    where = f"in [{format_key_path(path, quote=False)}] " if path else ""
    return (), f"unknown key {where}{key!r}{hint}"


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _string(t: TableReader, key: str, default: str, what: str = "a string") -> str:
    value = t.value(key, what, (str,))
    return default if value is None else str(value)


def _positive_int(t: TableReader, key: str) -> int | None:
    value = t.value(key, "a positive integer", (int,))
    if value is None:
        return None
    if value < 1:
        t.report(key, f"expected a positive integer, got {value}")
    return int(value)


def _repack(t: TableReader, key: str, default: str) -> str:
    expected = f"one of {', '.join(REPACK)}"
    text = _string(t, key, default, expected)
    if text not in REPACK:
        t.report(key, f"expected {expected}, got {text!r}")
    return text


def _model_ref(name: str, models: TableReader, repack: str) -> ModelRef:
    t = models.table_at(name, _MODEL_KEYS, expected='a table like [models.NAME] with path = "..."')
    if t is None:  # only after a problem, which has raised already
        t = TableReader(models.problems, {}, ("models", name))
    backend = _string(t, "backend", "auto")
    if backend not in BACKENDS:
        t.report("backend", f"expected one of {', '.join(BACKENDS)}")
    if backend == "openai":
        base_url = t.value("base_url", "a URL string", (str,))
        if not t.has("base_url"):
            t.wrong_type("base_url", "a URL string", None)  # "got NoneType None", as before
        model = _string(t, "model", "")
        location = f"openai:{base_url}" + (f"#{model}" if model else "")
    else:
        if not t.has("path"):
            t.report((), "missing key 'path' (the model file or folder)")
        raw = _string(t, "path", "", "a path string")
        location = str(Path(raw).expanduser())
    api_key_env = _string(t, "api_key_env", "", "an environment variable name")
    return ModelRef(
        name=name,
        path=location,
        backend=backend,
        source="config",
        n_ctx=_positive_int(t, "n_ctx"),
        n_threads=_positive_int(t, "threads"),
        api_key_env=api_key_env,
        repack=_repack(t, "repack", repack),
    )


def parse_config(data: Mapping[str, Any], file: Path) -> Config:
    """Validate a parsed config table; ConfigError naming the file and key at the first problem."""
    problems = Problems(
        file,
        fail_fast=ConfigError,
        describe=_describe,
        unknown_key=_unknown_key,
        quote_keys=False,
    )
    top = TableReader(problems, data, (), _TOP_KEYS)
    models = top.table_at("models", None, expected="a table of models")
    repack = _repack(top, "repack", "auto")
    default_model = _string(top, "default_model", "demo")
    annotator = _string(top, "annotator", "")
    theme = _string(top, "theme", "persona-dark")
    threads = _positive_int(top, "threads")
    return Config(
        default_model=default_model,
        annotator=annotator,
        theme=theme,
        threads=threads,
        repack=repack,
        models={}
        if models is None
        else {name: _model_ref(name, models, repack) for name in models.table},
        path=file,
    )


def _read_raw(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{file}: cannot read the config file: {error}") from error
    return loads_toml(text, file, ConfigError)


def load_config(file: Path | None = None) -> Config:
    """The user's config; all defaults when the file does not exist."""
    file = file or paths.config_file()
    return parse_config(_read_raw(file), file)


def update_config(file: Path | None = None, **changes: str) -> Config:
    """Set top-level keys (e.g. theme, annotator) and rewrite the file atomically."""
    file = file or paths.config_file()
    data = _read_raw(file)
    data.update(changes)
    config = parse_config(data, file)
    file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(file, tomli_w.dumps(data), mode=0o600)
    return config
