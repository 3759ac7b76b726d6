"""`--backend auto`: pick the backend from what the model is, without loading it.

- `openai:URL[#MODEL]` → "openai" (a server);
- a GGUF file (by its magic bytes, or a `.gguf` name) → "llama.cpp";
- an MLX model folder (`check_mlx_folder`: config.json, model*.safetensors, tokenizer
  files) → "mlx".
Anything else is a ModelLoadError that says what was expected.

The rule "this folder is an MLX model" is written here once, with no engine import:
`is_mlx_model` (a local model path that is a folder is meant as an MLX model; a GGUF is a
file) and `check_mlx_folder` (what such a folder must hold). The MLX backend, the model
scan, training and the loader all ask these two.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

from persona_tui.backend_names import LLAMA_CPP, MLX, OPENAI
from persona_tui.errors import ModelLoadError

_GGUF_MAGIC = b"GGUF"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


def is_mlx_model(path: str | Path) -> bool:
    """True when the local model at `path` is meant as an MLX model folder: it is a folder
    (every other local model is a GGUF file). Whether it is a complete one is
    `check_mlx_folder`'s to say, with what is missing."""
    return Path(path).expanduser().is_dir()


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files mlx-lm loads from `folder` (`model*.safetensors`), sorted."""
    return sorted(folder.glob("model*.safetensors"))


def check_mlx_folder(path: Path) -> list[Path]:
    """Check that `path` is a complete local MLX model folder; return its weight files.

    The folder is checked before mlx-lm sees the path, because mlx-lm downloads any path
    that does not exist. Raises ModelLoadError naming what is missing, so a typo is never
    taken for a hub id.
    """
    if not path.exists():
        raise ModelLoadError(
            f"MLX model folder {path} does not exist (persona-tui never downloads models: "
            "download or convert the model first, then pass its local folder)"
        )
    if not path.is_dir():
        raise ModelLoadError(
            f"{path} is a file, but the MLX backend needs a model folder "
            "(config.json, model*.safetensors and tokenizer files)"
        )
    missing: list[str] = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    weights = weight_files(path)
    if not weights:
        missing.append("model*.safetensors weights")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json or tokenizer.model)")
    if missing:
        raise ModelLoadError(f"MLX model folder {path} is incomplete: missing {', '.join(missing)}")
    return weights


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == _GGUF_MAGIC
    except OSError:
        return False


def detect_backend(path_or_ref: str) -> str:
    """The backend that runs `path_or_ref`: "llama.cpp", "mlx" or "openai"."""
    if path_or_ref.startswith("openai:"):
        return OPENAI
    if path_or_ref.startswith(("http://", "https://")):
        raise ModelLoadError(
            f"{path_or_ref} looks like a server URL; write it as openai:{path_or_ref}#MODEL "
            "to use an OpenAI-compatible server"
        )
    path = Path(path_or_ref).expanduser()
    if path.is_file():
        if _is_gguf(path) or path.suffix.lower() == ".gguf":
            return LLAMA_CPP
        raise ModelLoadError(
            f"{path} is not a GGUF file; give a .gguf file (llama.cpp), an MLX model folder, "
            "or openai:URL#MODEL"
        )
    if is_mlx_model(path):
        # The layout only (config.json and the weights); the loader's check_mlx_folder
        # says what else is missing.
        if (path / "config.json").is_file() and weight_files(path):
            return MLX
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if ggufs:
            raise ModelLoadError(
                f"{path} is a folder of GGUF files; pick one: {', '.join(ggufs[:5])}"
                + (" ..." if len(ggufs) > 5 else "")
            )
        raise ModelLoadError(
            f"{path} is a folder but not an MLX model folder (config.json and model*.safetensors)"
        )
    raise ModelLoadError(
        f"model {path_or_ref!r} does not exist (a .gguf file, an MLX model folder, or "
        "openai:URL#MODEL; persona-tui never downloads models)"
    )


def mlx_platform_note() -> str | None:
    """A note to show when MLX runs on CPU (anything but macOS on Apple Silicon), else None."""
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return None
    return "MLX runs on the CPU here (its GPU backend needs Apple Silicon): expect it to be slow"
