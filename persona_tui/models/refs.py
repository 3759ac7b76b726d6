"""Model references: what the user can pick (`ModelRef`)."""

from __future__ import annotations

from dataclasses import dataclass

from persona_tui.backend_names import AUTO


@dataclass(frozen=True)
class ModelRef:
    """A model the user can pick: where it is, which backend runs it, where it was found.

    `path` is a GGUF file, an MLX model folder, or `openai:URL[#MODEL]` for a server;
    `backend` is "llama.cpp", "mlx", "openai", or "auto" (decided from `path` on load).
    """

    name: str
    path: str
    backend: str = AUTO
    source: str = "file"  # demo | config | hf-cache | lm-studio | llama.cpp-cache | file
    n_ctx: int | None = None
    n_threads: int | None = None
    api_key_env: str = ""  # openai: the environment variable holding the API key
    repack: str | None = None  # llama.cpp extra buffer types: auto | on | off (None: auto)
