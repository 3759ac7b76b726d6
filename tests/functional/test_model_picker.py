"""The model picker: models with their backends, `b` to force a backend, "Open a file…"."""

from __future__ import annotations

import asyncio
import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, OptionList, Static

from persona_tui.backends.base import Backend
from persona_tui.models import discovery as models
from persona_tui.models.config import Config, load_config
from persona_tui.ui.screens.dialogs import TextPrompt
from persona_tui.ui.screens.home import HomeScreen
from persona_tui.ui.screens.model_picker import ModelPicker
from persona_tui.ui.screens.run import RunScreen
from tests.functional.conftest import one_thread_loader, wait_for


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path) -> dict[str, Path]:
    """Local caches holding an MLX folder (LM Studio) and a GGUF (llama.cpp's cache)."""
    home, llama_cache = tmp_path / "user", tmp_path / "llama-cache"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("LLAMA_CACHE", str(llama_cache))
    monkeypatch.setattr(models, "demo_available", lambda: False)
    folder = home / ".lmstudio" / "models" / "mlx-community" / "Tiny-4bit"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "tokenizer.json").write_text("{}")
    llama_cache.mkdir()
    shutil.copyfile(tiny_model, llama_cache / "cached.gguf")  # a copy: not the alias' file
    return {"mlx": folder, "gguf": llama_cache / "cached.gguf"}


@pytest.fixture
def file_config(ui_home: Path, tiny_model: Path) -> Config:
    """The test config written to config.toml (choosing a model rewrites that file)."""
    file = ui_home / "config.toml"
    file.write_text(
        'default_model = "tiny"\nannotator = "tester"\n'
        f"[models.tiny]\npath = {json.dumps(str(tiny_model))}\n",
        encoding="utf-8",
    )
    return load_config(file)


async def open_picker(app: Any, pilot: Any) -> ModelPicker:
    await pilot.press("m")
    await wait_for(pilot, lambda: isinstance(app.screen, ModelPicker))
    picker = app.screen
    assert isinstance(picker, ModelPicker)
    options = picker.query_one("#models", OptionList)
    await wait_for(pilot, lambda: options.option_count > 1)  # discovery done
    return picker


def test_picker_shows_backends_and_the_forced_backend_reaches_the_loader(
    make_app: Any, caches: dict[str, Path], file_config: Config
) -> None:
    calls: list[tuple[str, str]] = []

    def recording_loader(ref: str, config: Config, backend: str) -> Backend:
        calls.append((ref, backend))
        return one_thread_loader(ref, config, backend)

    async def scenario() -> None:
        app = make_app(config=file_config, loader=recording_loader)
        async with app.run_test(size=(120, 40)) as pilot:
            home = app.screen
            assert isinstance(home, HomeScreen)
            picker = await open_picker(app, pilot)
            options = picker.query_one("#models", OptionList)
            lines = {
                str(options.get_option_at_index(i).id): str(options.get_option_at_index(i).prompt)
                for i in range(options.option_count)
            }
            # The alias (backend auto in the config) shows what detection says.
            assert lines["tiny"].split()[:2] == ["tiny", "llama.cpp"]
            assert lines[str(caches["mlx"])].split()[:3] == [
                "mlx-community/Tiny-4bit",
                "mlx",
                "lm-studio",
            ]
            assert lines[str(caches["gguf"])].split()[1] == "llama.cpp"
            assert "Open a file" in str(
                options.get_option_at_index(options.option_count - 1).prompt
            )

            line = picker.query_one("#backend", Static)
            assert picker.backend == "auto" and "by what the model is" in str(line.render())
            seen = []
            for _ in range(4):  # b cycles through every backend and back to auto
                await pilot.press("b")
                seen.append(picker.backend)
                assert seen[-1] == "auto" or "forced" in str(line.render())
            assert seen == ["llama.cpp", "mlx", "openai", "auto"]

            await pilot.press("b", "b")  # mlx, then choose the tiny GGUF alias
            options.highlighted = next(
                i
                for i in range(options.option_count)
                if options.get_option_at_index(i).id == "tiny"
            )
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is home)
            assert (home.model, home.backend) == ("tiny", "mlx")
            assert "tiny on mlx" in str(home.query_one("#home-bar", Static).render())

            while home.selected_scenario() is None or home.selected_scenario().id != "small":
                await pilot.press("down")
            await pilot.press("enter")  # run: the real loader, forced to MLX, refuses a GGUF
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            message = app.screen.query_one("#run-message", Static)
            await wait_for(pilot, lambda: "-error" in message.classes)
            assert "MLX backend needs a model folder" in str(message.render())
            assert calls == [("tiny", "mlx")]

            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is home)
            picker = await open_picker(app, pilot)
            assert picker.backend == "mlx"  # the picker opens on the current choice

    asyncio.run(scenario())


def test_open_a_file_takes_gguf_mlx_folder_or_server_and_rejects_the_rest(
    make_app: Any, caches: dict[str, Path], ui_home: Path, file_config: Config
) -> None:
    async def type_location(app: Any, pilot: Any, text: str) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
        app.screen.query_one("#prompt-input", Input).value = text
        await pilot.press("enter")

    async def scenario() -> None:
        app = make_app(config=file_config)
        async with app.run_test(size=(120, 40)) as pilot:
            home = app.screen
            assert isinstance(home, HomeScreen)
            for location, backend in (
                (str(caches["mlx"]), "mlx"),
                (str(caches["gguf"]), "llama.cpp"),
                ("openai:http://127.0.0.1:9/v1#tiny", "openai"),
            ):
                picker = await open_picker(app, pilot)
                await pilot.press("o")
                await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
                assert "MLX model folder" in str(app.screen.query_one(".dialog-title").render())
                await type_location(app, pilot, location)
                await wait_for(pilot, lambda: app.screen is home)
                assert (home.model, home.backend) == (location, "auto")
                # What was opened is what auto detection will load it with.
                assert models.resolve_model(location, app.config.models).backend == backend

            saved = tomllib.loads((ui_home / "config.toml").read_text())
            assert saved["default_model"] == "openai:http://127.0.0.1:9/v1#tiny"

            picker = await open_picker(app, pilot)
            await pilot.press("o")
            not_a_model = caches["mlx"] / "tokenizer.json"
            await type_location(app, pilot, str(not_a_model))
            # Refused with the reason, and asked again with the text kept for correcting.
            await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
            prompt_input = app.screen.query_one("#prompt-input", Input)
            assert prompt_input.value == str(not_a_model)
            assert any("not a GGUF file" in n.message for n in app._notifications)
            await pilot.press("escape")
            assert app.screen is picker
            await pilot.press("escape")
            assert app.screen is home and home.model.startswith("openai:")

    asyncio.run(scenario())


def test_tui_command_backend_reaches_the_loader(make_app: Any) -> None:
    """`persona-tui tui --scenario S --model M --backend B` loads M with B."""
    from tests.scenario_text import SMALL_SCENARIO, write_small_scenario

    calls: list[tuple[str, str]] = []

    def spy(ref: str, config: Config, backend: str = "auto") -> Backend:
        calls.append((ref, backend))
        return one_thread_loader(ref, config, backend)

    async def run(folder: Path) -> str:
        scenario = write_small_scenario(folder, SMALL_SCENARIO)
        app = make_app(scenario=str(scenario), model="tiny", backend="mlx", loader=spy)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and bool(calls))
            await wait_for(
                pilot,
                lambda: "folder" in str(app.screen.query_one("#run-message", Static).render()),
            )
            return str(app.screen.query_one("#run-message", Static).render())

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        message = asyncio.run(run(Path(folder)))
    assert calls == [("tiny", "mlx")]
    assert "folder" in message  # the MLX backend refuses a GGUF file, shown in the app
