"""Every file location the app uses, in one place.

User files live in platformdirs' per-user folders; built-in scenarios and themes are
found in the source checkout (top-level `scenarios/`, `themes/`) or, in an installed
wheel, in `persona_tui/_data/`. `PERSONA_TUI_HOME` moves all user folders under one
directory (tests and portable set-ups use it).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "persona-tui"
_PACKAGE_DIR = Path(__file__).resolve().parent


def _home_override() -> Path | None:
    home = os.environ.get("PERSONA_TUI_HOME")
    return Path(home) if home else None


def config_dir() -> Path:
    home = _home_override()
    return home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    home = _home_override()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    home = _home_override()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME))


def config_file() -> Path:
    return config_dir() / "config.toml"


def sessions_dir() -> Path:
    return data_dir() / "sessions"


def vectors_dir() -> Path:
    """Where `persona-tui vectors` saves trait directions by default (persona_tui/vectors)."""
    return data_dir() / "vectors"


def user_scenarios_dir() -> Path:
    return config_dir() / "scenarios"


def user_themes_dir() -> Path:
    return config_dir() / "themes"


def _builtin_dir(name: str) -> Path:
    installed = _PACKAGE_DIR / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent / name


def builtin_scenarios_dir() -> Path:
    return _builtin_dir("scenarios")


def builtin_themes_dir() -> Path:
    return _builtin_dir("themes")
