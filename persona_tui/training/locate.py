"""Which model a training study trains on (the CLI and the app); where its adapters go by
default is `run.adapters.default_output` (a run looks there too)."""

from __future__ import annotations

from pathlib import Path

from persona_tui.backend_names import LLAMA_CPP, MLX
from persona_tui.backends.detect import detect_backend
from persona_tui.errors import TrainingError
from persona_tui.models.config import Config
from persona_tui.models.discovery import demo_model_path, resolve_model


def training_model_path(ref_text: str | None, config: Config) -> Path:
    """The GGUF file (torch + peft) or MLX model folder (mlx-lm's LoRA) `ref_text` names
    ("demo", a config alias, a path; None: the default).

    Raises TrainingError when the model is neither (training reads its weights).
    """
    ref = resolve_model(ref_text or config.default_model, config.models)
    if ref.source == "demo":
        return demo_model_path()
    if detect_backend(str(ref.path)) not in (LLAMA_CPP, MLX):
        raise TrainingError(
            f"training needs a GGUF model file or an MLX model folder; {ref.path} is neither"
        )
    return Path(ref.path)
