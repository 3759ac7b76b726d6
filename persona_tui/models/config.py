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

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from persona_tui import paths
from persona_tui._util.atomic import atomic_write_text
from persona_tui._util.textdata import loads_toml
from persona_tui.errors import ConfigError
from persona_tui.models.refs import ModelRef
from persona_tui.values import BACKEND_CHOICES

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


def _unknown(key: str, allowed: tuple[str, ...], where: str, file: Path) -> ConfigError:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; allowed keys: {', '.join(allowed)}"
    return ConfigError(f"{file}: unknown key {where}{key!r}{hint}")


def _expect(value: Any, kind: type | tuple[type, ...], key: str, file: Path, what: str) -> Any:
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ConfigError(f"{file}: {key}: expected {what}, got {type(value).__name__} {value!r}")
    return value


def _positive_int(value: Any, key: str, file: Path) -> int:
    number: int = _expect(value, int, key, file, "a positive integer")
    if number < 1:
        raise ConfigError(f"{file}: {key}: expected a positive integer, got {number}")
    return number


def _repack(value: Any, key: str, file: Path) -> str:
    text: str = _expect(value, str, key, file, f"one of {', '.join(REPACK)}")
    if text not in REPACK:
        raise ConfigError(f"{file}: {key}: expected one of {', '.join(REPACK)}, got {text!r}")
    return text


def _model_ref(name: str, table: Any, file: Path, repack: str) -> ModelRef:
    where = f"models.{name}"
    _expect(table, dict, where, file, 'a table like [models.NAME] with path = "..."')
    for key in table:
        if key not in _MODEL_KEYS:
            raise _unknown(key, _MODEL_KEYS, f"in [{where}] ", file)
    backend = _expect(table.get("backend", "auto"), str, f"{where}.backend", file, "a string")
    if backend not in BACKENDS:
        raise ConfigError(f"{file}: {where}.backend: expected one of {', '.join(BACKENDS)}")
    if backend == "openai":
        base_url = _expect(table.get("base_url"), str, f"{where}.base_url", file, "a URL string")
        model = _expect(table.get("model", ""), str, f"{where}.model", file, "a string")
        location = f"openai:{base_url}" + (f"#{model}" if model else "")
    else:
        if "path" not in table:
            raise ConfigError(f"{file}: {where}: missing key 'path' (the model file or folder)")
        raw = _expect(table["path"], str, f"{where}.path", file, "a path string")
        location = str(Path(raw).expanduser())
    n_ctx = table.get("n_ctx")
    threads = table.get("threads")
    api_key_env = table.get("api_key_env", "")
    _expect(api_key_env, str, f"{where}.api_key_env", file, "an environment variable name")
    return ModelRef(
        name=name,
        path=location,
        backend=backend,
        source="config",
        n_ctx=None if n_ctx is None else _positive_int(n_ctx, f"{where}.n_ctx", file),
        n_threads=None if threads is None else _positive_int(threads, f"{where}.threads", file),
        api_key_env=api_key_env,
        repack=_repack(table.get("repack", repack), f"{where}.repack", file),
    )


def parse_config(data: Mapping[str, Any], file: Path) -> Config:
    """Validate a parsed config table."""
    for key in data:
        if key not in _TOP_KEYS:
            raise _unknown(key, _TOP_KEYS, "", file)
    models_table = _expect(data.get("models", {}), dict, "models", file, "a table of models")
    threads = data.get("threads")
    repack = _repack(data.get("repack", "auto"), "repack", file)
    return Config(
        default_model=_expect(
            data.get("default_model", "demo"), str, "default_model", file, "a string"
        ),
        annotator=_expect(data.get("annotator", ""), str, "annotator", file, "a string"),
        theme=_expect(data.get("theme", "persona-dark"), str, "theme", file, "a string"),
        threads=None if threads is None else _positive_int(threads, "threads", file),
        repack=repack,
        models={
            name: _model_ref(name, table, file, repack) for name, table in models_table.items()
        },
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
