"""Optional dependencies of the analysis extra, imported lazily with a clear message."""

from __future__ import annotations

import importlib
from types import ModuleType

from persona_tui.errors import PersonaError

INSTALL_HINT = "install with pip install 'persona-tui[analysis]'"


class MissingDependencyError(PersonaError):
    """An optional package the requested analysis needs is not installed."""


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` or raise MissingDependencyError saying what needs it and how to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise MissingDependencyError(
            f"{purpose} needs the '{package}' package: {INSTALL_HINT}"
        ) from None
