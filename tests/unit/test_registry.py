"""The engine registry (backends/registry.py): engines by name, the load options each
declares, and the loader passing only those."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from persona_tui.backends import registry
from persona_tui.errors import ModelLoadError
from persona_tui.models.load import load_backend
from persona_tui.models.refs import ModelRef


class FakeBackend:
    """Records what `load` was given."""

    def __init__(self, location: str | Path, options: dict[str, Any]) -> None:
        self.location = location
        self.options = options

    @classmethod
    def load(cls, location: str | Path, **options: Any) -> FakeBackend:
        return cls(location, options)


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A "fake" engine taking n_ctx only, registered for one test; its factory's calls."""
    monkeypatch.setattr(registry, "_ENGINES", dict(registry._ENGINES))
    calls: list[str] = []

    @registry.engine("fake", options=("n_ctx",))
    def fake() -> Any:
        calls.append("imported")
        return FakeBackend

    return calls


def test_a_registered_engine_is_found_by_name_and_imported_only_when_loaded(
    fake_engine: list[str],
) -> None:
    assert "fake" in registry.engine_names()
    found = registry.get_engine("fake")
    assert (found.name, found.options) == ("fake", frozenset({"n_ctx"}))
    assert fake_engine == []  # registering and finding import nothing
    loaded = registry.load_engine("fake", "somewhere", {"n_ctx": 64})
    assert isinstance(loaded.backend, FakeBackend)
    assert (loaded.backend.location, loaded.backend.options) == ("somewhere", {"n_ctx": 64})
    assert fake_engine == ["imported"]


def test_options_an_engine_does_not_declare_are_never_passed(fake_engine: list[str]) -> None:
    options = {"n_ctx": None, "n_threads": 4, "repack": "off"}
    # Defaults (nothing asked for): dropped silently.
    quiet = registry.load_engine("fake", "x", options)
    assert isinstance(quiet.backend, FakeBackend)
    assert quiet.backend.options == {"n_ctx": None} and quiet.ignored == ()
    # Asked for by the user: still not passed, and reported.
    asked = registry.load_engine("fake", "x", options, frozenset({"n_threads", "n_ctx"}))
    assert isinstance(asked.backend, FakeBackend)
    assert asked.backend.options == {"n_ctx": None} and asked.ignored == ("n_threads",)


def test_an_engine_registered_twice_is_refused(fake_engine: list[str]) -> None:
    with pytest.raises(ValueError, match="registered twice"):
        registry.engine("fake")(lambda: FakeBackend)


def test_an_unknown_engine_lists_the_supported_ones() -> None:
    with pytest.raises(ModelLoadError) as error:
        registry.get_engine("no-such-engine")
    message = str(error.value)
    assert "'no-such-engine'" in message
    assert "supported: llama.cpp, mlx, openai" in message
    with pytest.raises(ModelLoadError, match=r"supported: llama\.cpp, mlx, openai"):
        registry.load_engine("no-such-engine", "x", {})


def test_the_engines_declare_their_load_options() -> None:
    options = {name: registry.get_engine(name).options for name in registry.engine_names()}
    assert options == {
        "llama.cpp": frozenset({"n_ctx", "n_threads", "repack"}),
        "mlx": frozenset({"n_ctx"}),  # MLX picks its own threads
        "openai": frozenset({"n_ctx", "api_key_env"}),
    }


def test_load_backend_notes_an_option_asked_for_that_the_engine_ignores(
    fake_engine: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    ref = ModelRef(name="f", path="/models/f", backend="fake", n_ctx=32)
    backend: Any = load_backend(ref, n_threads=2, repack="on")  # config-wide defaults
    assert backend.options == {"n_ctx": 32}
    assert capsys.readouterr().err == ""
    load_backend(ref, n_threads=2, asked=frozenset({"n_threads"}))  # --threads 2
    assert capsys.readouterr().err == (
        "persona-tui: --threads does not apply to the fake backend; ignored\n"
    )
    own = ModelRef(name="f", path="/models/f", backend="fake", n_threads=3)  # the alias's own
    load_backend(own)
    assert "--threads does not apply" in capsys.readouterr().err


def test_load_backend_refuses_an_unknown_backend_naming_auto_too() -> None:
    with pytest.raises(ModelLoadError, match=r"supported: llama.cpp, mlx, openai, auto\)"):
        load_backend(ModelRef(name="x", path="/models/x", backend="no-such-engine"))
