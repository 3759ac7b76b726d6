"""`--backend auto`: pick the backend from what the model is, without loading it.

- `openai:URL[#MODEL]` → "openai" (a server);
- a GGUF file (by its magic bytes, or a `.gguf` name) → "llama.cpp";
- a folder with `config.json` and `*.safetensors` → "mlx".
Anything else is a ModelLoadError that says what was expected.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

from persona_tui.backend_names import LLAMA_CPP, MLX, OPENAI
from persona_tui.errors import ModelLoadError

_GGUF_MAGIC = b"GGUF"


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
    if path.is_dir():
        if (path / "config.json").is_file() and any(path.glob("*.safetensors")):
            return MLX
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if ggufs:
            raise ModelLoadError(
                f"{path} is a folder of GGUF files; pick one: {', '.join(ggufs[:5])}"
                + (" ..." if len(ggufs) > 5 else "")
            )
        raise ModelLoadError(
            f"{path} is a folder but not an MLX model folder (config.json and *.safetensors)"
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
