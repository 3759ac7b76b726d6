"""Themes as TOML files: validated tables that become `textual.theme.Theme` objects.

Built-in themes live in the top-level `themes/` folder (shipped in the wheel); users add
their own in the config folder's `themes/`. A user theme with a built-in's name replaces
it. Broken files are collected, not raised, so the app starts and reports them once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import Theme

from persona_tui import paths
from persona_tui._util.tables import Problems, TableReader, closest
from persona_tui._util.textdata import DataFileError, loads_toml
from persona_tui._util.toml_scan import KeyPath

DEFAULT_THEME = "persona-dark"
_COLOR_KEYS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)
_FLOAT_KEYS = ("luminosity_spread", "text_alpha")
_ALLOWED = ("name", "dark", "variables", *_COLOR_KEYS, *_FLOAT_KEYS)


@dataclass(frozen=True)
class ThemeSet:
    """Every theme that loaded, in name order, and one line per problem in the others."""

    themes: tuple[Theme, ...]
    problems: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(theme.name for theme in self.themes)


def _unknown_key(path: KeyPath, key: str, allowed: Sequence[str]) -> tuple[KeyPath, str]:
    close = closest(key, allowed)
    hint = f"did you mean '{close}'?" if close else f"allowed: {', '.join(allowed)}"
    return (), f"unknown key '{key}'; {hint}"


def _color(t: TableReader, key: str) -> str | None:
    value = t.value(key, 'a colour string like "#1e1e2e"', (str,))
    if value is None:
        return None
    try:
        Color.parse(value)
    except ColorParseError:
        t.report(key, f'{value!r} is not a colour (use "#rrggbb" or a name)')
        return None
    return str(value)


def parse_theme(data: Mapping[str, Any], file: Path) -> tuple[Theme | None, list[str]]:
    """Build a Theme from a parsed TOML table; return (None, problems) when it is invalid."""
    problems = Problems(file, describe=None, unknown_key=_unknown_key)
    t = TableReader(problems, data, (), _ALLOWED)
    name = t.value("name", "a non-empty string", (str,))
    if name is not None and not name.strip():
        t.report("name", "expected a non-empty string")
    if not isinstance(name, str) or not name.strip():
        name = file.stem
    if not t.has("primary"):
        t.report((), "missing key 'primary' (the main accent colour)")
    colors = {key: _color(t, key) for key in _COLOR_KEYS if t.has(key)}
    dark = t.value("dark", "true or false", (bool,))
    dark = True if dark is None else bool(dark)
    floats: dict[str, float] = {}
    for key in _FLOAT_KEYS:
        value = t.value(key, "a number", (int, float))
        if value is not None:
            floats[key] = float(value)
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        t.report((), "[variables]: expected a table of strings")
        variables = {}
    if problems:
        return None, problems.lines()
    theme = Theme(
        name=name,
        primary=str(colors["primary"]),
        secondary=colors.get("secondary"),
        warning=colors.get("warning"),
        error=colors.get("error"),
        success=colors.get("success"),
        accent=colors.get("accent"),
        foreground=colors.get("foreground"),
        background=colors.get("background"),
        surface=colors.get("surface"),
        panel=colors.get("panel"),
        boost=colors.get("boost"),
        dark=dark,
        variables={str(k): str(v) for k, v in variables.items()},
        **floats,  # type: ignore[arg-type]
    )
    try:
        theme.to_color_system().generate()
    except Exception as error:  # any failure means a broken theme file
        t.report((), f"the colours do not form a theme: {error}")
        return None, problems.lines()
    return theme, []


def load_theme_file(file: Path) -> tuple[Theme | None, list[str]]:
    """Read and validate one theme file."""
    try:
        data = loads_toml(file.read_text(encoding="utf-8"), file)
    except DataFileError as error:
        return None, [str(error)]
    except (OSError, UnicodeDecodeError) as error:
        return None, [f"{file}: cannot read the theme file: {error}"]
    return parse_theme(data, file)


def load_themes(folders: Iterable[Path] | None = None) -> ThemeSet:
    """Load every `*.toml` theme from the built-in then the user folder (later wins)."""
    if folders is None:
        folders = (paths.builtin_themes_dir(), paths.user_themes_dir())
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for file in sorted(folder.glob("*.toml")):
            theme, file_problems = load_theme_file(file)
            problems.extend(file_problems)
            if theme is not None:
                themes[theme.name] = theme
    return ThemeSet(tuple(themes[name] for name in sorted(themes)), tuple(problems))
