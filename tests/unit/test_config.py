from __future__ import annotations

from pathlib import Path

import pytest

from persona_tui.errors import ConfigError
from persona_tui.models.config import load_config, update_config


def write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "config.toml"
    file.write_text(text, encoding="utf-8")
    return file


def test_missing_config_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "nope.toml")
    assert config.default_model == "demo"
    assert config.models == {}


def test_model_aliases(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        'default_model = "small"\nannotator = "ada"\nthreads = 2\n'
        '[models.small]\npath = "~/m.gguf"\nn_ctx = 2048\nthreads = 1\n',
    )
    config = load_config(file)
    ref = config.models["small"]
    assert ref.path == str(Path("~/m.gguf").expanduser())
    assert (ref.n_ctx, ref.n_threads, ref.source) == (2048, 1, "config")
    assert config.annotator == "ada"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('anotator = "x"\n', "did you mean 'annotator'"),
        ("threads = 0\n", "threads: expected a positive integer"),
        ("threads = true\n", "threads: expected a positive integer"),
        ('[models.a]\nbackend = "llama.cpp"\n', "models.a: missing key 'path'"),
        ('[models.a]\npath = "x"\nctx = 3\n', "did you mean 'n_ctx'"),
        ('[models.a]\npath = "x"\nbackend = "vllm"\n', "models.a.backend: expected one of"),
        ("default_model = [\n", "invalid TOML"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    file = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(file)
    assert str(file) in str(info.value)


def test_update_config_keeps_other_keys(tmp_path: Path) -> None:
    file = write(tmp_path, '# mine\nannotator = "ada"\n[models.a]\npath = "x.gguf"\n')
    config = update_config(file, theme="persona-light")
    assert config.theme == "persona-light"
    again = load_config(file)
    assert again.annotator == "ada" and "a" in again.models
    assert file.stat().st_mode & 0o777 == 0o600
