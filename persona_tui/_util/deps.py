"""Optional dependencies (the analysis and inspect extras), imported lazily, clear messages."""

from __future__ import annotations

import importlib
from types import ModuleType

from persona_tui.errors import PersonaError


class MissingDependencyError(PersonaError):
    """An optional package the requested analysis needs is not installed."""


def install_hint(extra: str) -> str:
    """How to install an extra, as the error messages say it."""
    return f"install with pip install 'persona-tui[{extra}]'"


INSTALL_HINT = install_hint("analysis")


def require(module: str, purpose: str, extra: str = "analysis") -> ModuleType:
    """Import `module` or raise MissingDependencyError saying what needs it and how to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise MissingDependencyError(
            f"{purpose} needs the '{package}' package: {install_hint(extra)}"
        ) from None
