"""The LoRA adapter each engine applies, as data: its files, and the path `use_adapter` takes.

llama.cpp applies a LoRA adapter GGUF: the adapter is the file (`adapter.gguf`, which
`persona-tui train` writes in DIR/<condition>/). MLX applies an mlx-lm adapter folder
(`adapters.safetensors` + `adapter_config.json`, what `mlx_lm.load(model, adapter_path=...)`
takes): the adapter is the folder (DIR/<condition>/mlx/). Either way one file holds the
weights, and its sha256 is what a session records of the adapter and checks on resume.

Finding, recording and checking adapters (run/adapters.py) is one
code path over these records, the kind of file being data. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from persona_tui.backend_names import LLAMA_CPP, MLX

# The training record `persona-tui train` leaves in each condition folder, beside the
# adapter: what a run copies into the session and checks the adapter against.
TRAINING_RECORD = "training.toml"


@dataclass(frozen=True)
class AdapterFormat:
    """One engine's LoRA adapter: what it is called, its files, and where train writes it."""

    backend: str  # the backend that applies it
    kind: str  # what it is, for messages
    weights: str  # the file holding the weights: the one a session's sha256 names
    config: str  # a file that must sit beside the weights ("" for none)
    folder: str  # "": the adapter is the weights file; else its folder in DIR/<condition>

    @property
    def files(self) -> tuple[str, ...]:
        return (self.weights, self.config) if self.config else (self.weights,)

    @property
    def spelled(self) -> str:
        """Its kind and files, e.g. "an mlx-lm adapter folder (adapters.safetensors + ...)"."""
        return f"{self.kind} ({' + '.join(self.files)})"

    @property
    def written_in(self) -> str:
        """Where `persona-tui train` leaves it, relative to the output folder."""
        return f"DIR/<condition>/replicate-<k>/{self.folder or self.weights}"

    def in_condition(self, condition_folder: Path) -> Path:
        """The adapter `persona-tui train` writes for a condition, in its folder."""
        return condition_folder / (self.folder or self.weights)

    def weights_of(self, adapter: Path) -> Path:
        """The weights file of `adapter` (the path `use_adapter` takes)."""
        return adapter / self.weights if self.folder else adapter

    def locate(self, where: Path) -> Path | None:
        """The adapter of this kind `where` names: a condition folder of `persona-tui
        train`, the adapter itself, or (for a folder adapter) one of its files. Found when
        any of its files is there (`missing` says which are not); None otherwise."""
        if where.is_file():
            if self.folder:
                return where.parent if where.name in self.files else None
            return where if where.name not in _FOLDER_FILES else None
        if not where.is_dir():
            return None
        if not self.folder:
            inside = where / self.weights
            return inside if inside.is_file() else None
        for candidate in (where, where / self.folder):
            if any((candidate / name).is_file() for name in self.files):
                return candidate
        return None

    def missing(self, adapter: Path) -> list[Path]:
        """The files of `adapter` that are not there."""
        if not self.folder:
            return [] if adapter.is_file() else [adapter]
        return [adapter / name for name in self.files if not (adapter / name).is_file()]


GGUF_ADAPTER = AdapterFormat(
    backend=LLAMA_CPP,
    kind="a llama.cpp LoRA adapter GGUF",
    weights="adapter.gguf",
    config="",
    folder="",
)
MLX_ADAPTER = AdapterFormat(
    backend=MLX,
    kind="an mlx-lm adapter folder",
    weights="adapters.safetensors",
    config="adapter_config.json",
    folder="mlx",
)
ADAPTER_FORMATS = (GGUF_ADAPTER, MLX_ADAPTER)
# The files that only a folder adapter has (a GGUF adapter is any other file).
_FOLDER_FILES = frozenset(MLX_ADAPTER.files)


def adapter_format(backend: str) -> AdapterFormat | None:
    """The adapter `backend` applies (None: it applies none)."""
    return next((f for f in ADAPTER_FORMATS if f.backend == backend), None)


def adapter_weights(adapter: Path) -> Path:
    """The weights file of an adapter as recorded (a GGUF file, or an mlx-lm folder)."""
    return MLX_ADAPTER.weights_of(adapter) if adapter.is_dir() else adapter


def adapter_config(adapter: Path) -> Path | None:
    """The settings file beside an adapter's weights, as recorded: an mlx-lm folder's
    adapter_config.json (None for a GGUF, whose settings are inside the file)."""
    return adapter / MLX_ADAPTER.config if adapter.is_dir() else None
