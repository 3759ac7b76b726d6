"""Which GGUF a training study trains on, and where its adapters go (the CLI and the app)."""

from __future__ import annotations

from pathlib import Path

from persona_tui import paths
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


def default_output(scenario_id: str, model_path: Path) -> Path:
    """The data folder's `adapters/SCENARIO--MODEL`, where a study's adapters go by default."""
    return paths.data_dir() / "adapters" / f"{scenario_id}--{model_path.stem}"
