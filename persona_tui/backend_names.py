"""The backends, by the names a session records (`ModelInfo.backend`), a config's `backend`
and `--backend` take: the one definition, which everything else imports.

A module of its own, with no imports, because the command line needs these names to build
its parser and `persona-tui --help` must stay fast.
"""

from __future__ import annotations

from typing import Final

LLAMA_CPP: Final = "llama.cpp"
MLX: Final = "mlx"
OPENAI: Final = "openai"
BACKEND_NAMES: Final = (LLAMA_CPP, MLX, OPENAI)
# What a user may ask for: a backend, or AUTO (decided from what the model is, on load).
AUTO: Final = "auto"
BACKEND_CHOICES: Final = (AUTO, *BACKEND_NAMES)
