"""The scenario catalog: the built-in scenarios, the user's own, and finding one by name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from persona_tui import paths
from persona_tui._util.tables import did_you_mean
from persona_tui.errors import ScenarioError
from persona_tui.scenario.model import Scenario
from persona_tui.scenario.parse import load_scenario

Origin = Literal["built-in", "user"]


@dataclass(frozen=True)
class CatalogEntry:
    """A scenario file of the catalog, loaded: the scenario, or why it does not validate."""

    path: Path
    origin: Origin
    scenario: Scenario | ScenarioError


def builtin_scenarios() -> list[Path]:
    """The scenario files shipped with persona-tui, sorted by name."""
    return _toml_files(paths.builtin_scenarios_dir())


def user_scenarios() -> list[Path]:
    """The user's own scenario files (in `paths.user_scenarios_dir()`), sorted by name."""
    return _toml_files(paths.user_scenarios_dir())


def list_scenarios() -> list[CatalogEntry]:
    """Every built-in scenario, then every user scenario (each sorted by name), loaded.

    The CLI (`persona-tui scenarios`) and the app's Home list scenarios through here.
    """
    entries = []
    groups: tuple[tuple[Origin, list[Path]], ...] = (
        ("built-in", builtin_scenarios()),
        ("user", user_scenarios()),
    )
    for origin, files in groups:
        for file in files:
            try:
                loaded: Scenario | ScenarioError = load_scenario(file)
            except ScenarioError as error:
                loaded = error
            entries.append(CatalogEntry(file, origin, loaded))
    return entries


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
