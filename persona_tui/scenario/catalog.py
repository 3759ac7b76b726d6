"""The scenario catalog: the built-in scenarios, the user's own, and finding one by name."""

from __future__ import annotations

from pathlib import Path

from persona_tui import paths
from persona_tui._util.tables import did_you_mean
from persona_tui.errors import ScenarioError


def builtin_scenarios() -> list[Path]:
    """The scenario files shipped with persona-tui, sorted by name."""
    return _toml_files(paths.builtin_scenarios_dir())


def user_scenarios() -> list[Path]:
    """The user's own scenario files (in `paths.user_scenarios_dir()`), sorted by name."""
    return _toml_files(paths.user_scenarios_dir())


def resolve_scenario(ref: str) -> Path:
    """A scenario file from a path or an id (a file name without `.toml`).

    A user scenario with the same id as a built-in one takes precedence over it.
    """
    candidate = Path(ref).expanduser()
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        raise ScenarioError([f"{ref}: is a directory, not a scenario file"])
    by_id = {path.stem: path for path in builtin_scenarios()}
    by_id.update({path.stem: path for path in user_scenarios()})
    if ref in by_id:
        return by_id[ref]
    if ref.endswith(".toml") or "/" in ref or "\\" in ref:
        raise ScenarioError([f"{ref}: file not found"])
    available = ", ".join(sorted(by_id)) or "none"
    raise ScenarioError(
        [
            f"unknown scenario {ref!r}: not a file, nor the id of a built-in or user scenario."
            f"{did_you_mean(ref, by_id, capital=True)} Available ids: {available}."
            f" (User scenarios go in {paths.user_scenarios_dir()}.)"
        ]
    )


def _toml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        path for path in folder.glob("*.toml") if path.is_file() and not path.name.startswith(".")
    )
