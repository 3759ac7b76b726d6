"""The `train` extra's libraries, imported lazily with one clear line when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from persona_tui.errors import TrainingError

INSTALL_HINT = "pip install 'persona-tui[train]'"
TRAINING_MODULES = ("torch", "transformers", "peft", "accelerate", "gguf", "numpy")


def require_training() -> None:
    """Import every library training needs, or raise TrainingError naming the extra."""
    for name in TRAINING_MODULES:
        require(name)


def require(name: str) -> ModuleType:
    """Import `name` (one of the train extra's modules) or raise TrainingError."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise TrainingError(
            f"training needs the '{name}' package (the train extra): {INSTALL_HINT}"
        ) from None


def library_versions() -> dict[str, str]:
    """The versions of the libraries a training run used, for its record."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in (
        "persona-tui",
        "torch",
        "transformers",
        "peft",
        "accelerate",
        "gguf",
        "numpy",
        "safetensors",
        "llama-cpp-python",
    ):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions
