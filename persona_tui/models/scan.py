"""Finding models in a folder tree: GGUF files and MLX model folders, by listings only.

Used by `persona_tui.models.discovery.discover_models` on the local caches (Hugging Face hub,
LM Studio, llama.cpp). Fast and robust: one `os.walk` per root, no hashing, no engine
import, and a missing or unreadable folder simply holds no models.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from persona_tui._util.textdata import loads_json
from persona_tui.backend_names import LLAMA_CPP, MLX
from persona_tui.backends.detect import check_mlx_folder
from persona_tui.errors import ModelLoadError

# Split GGUFs ("model-00002-of-00003.gguf"): only the first part is loadable on its own.
_SPLIT_PART = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
# A config.json larger than this is not read (no model config is that big).
_CONFIG_LIMIT = 1 << 20
# Architecture names (config.json "architectures") of models that generate text.
_TEXT_MODEL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def identity(location: str) -> str:
    """What makes two model locations the same model: the resolved path (or the URL)."""
    if location.startswith("openai:"):
        return location
    try:
        return str(Path(location).expanduser().resolve())
    except OSError:
        return location


def sorted_children(folder: Path) -> list[Path]:
    """The sub-folders of `folder`, sorted; none when it is missing or unreadable."""
    try:
        return sorted(entry for entry in folder.iterdir() if entry.is_dir())
    except OSError:
        return []


def local_models(root: Path) -> Iterator[tuple[Path, str, str]]:
    """(path, backend, identity key) of every model under `root`, in one walk.

    An MLX folder is keyed by its resolved weight files, so HF snapshots of two
    revisions with the same weights (symlinks to the same blobs) count once; a GGUF
    file's key is "" (meaning: its resolved path).
    """
    # os.walk swallows unreadable folders (onerror=None); symlinked files (HF blobs) count.
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        here = Path(folder)
        weights = mlx_weights(here, files)
        if weights:
            yield here, MLX, "mlx:" + "|".join(identity(str(file)) for file in weights)
        for path in _gguf_in(here, files):
            yield path, LLAMA_CPP, ""


def gguf_files(root: Path) -> list[Path]:
    """Loadable .gguf files under `root` (recursively), skipping projectors and split tails."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        found.extend(_gguf_in(Path(folder), files))
    return found


def _gguf_in(folder: Path, files: list[str]) -> list[Path]:
    found: list[Path] = []
    for name in sorted(files):
        lower = name.lower()
        if not lower.endswith(".gguf") or "mmproj" in lower:
            continue
        split = _SPLIT_PART.search(name)
        if split and int(split.group(1)) != 1:
            continue
        path = folder / name
        if path.is_file():
            found.append(path)
    return found


def mlx_weights(folder: Path, files: list[str]) -> list[Path]:
    """The weight files if `folder` is an MLX model folder of a text model, else [].

    The check the MLX backend makes before loading (config.json, model*.safetensors, a
    tokenizer file: `check_mlx_folder`), tried only when the walk's file list already
    shows config.json and model*.safetensors, so most folders cost nothing more. Folders
    whose config.json lists only architectures that do not generate text (BERT-style
    encoders, embedding models, which share the layout) are left out; a config without
    "architectures" is kept (mlx-lm's own folders may omit it).
    """
    if "config.json" not in files or not any(
        name.startswith("model") and name.endswith(".safetensors") for name in files
    ):
        return []

    try:
        weights = check_mlx_folder(folder)
        if not all(file.is_file() for file in weights):  # a dangling link: an unfinished download
            return []
        with (folder / "config.json").open("rb") as handle:
            config = loads_json(handle.read(_CONFIG_LIMIT), folder / "config.json", ModelLoadError)
    except (ModelLoadError, OSError, ValueError):
        return []
    if not isinstance(config, dict):
        return []
    architectures = config.get("architectures")
    if not isinstance(architectures, list) or not architectures:
        return weights
    generates = any(str(name).endswith(_TEXT_MODEL_SUFFIXES) for name in architectures)
    return weights if generates else []
