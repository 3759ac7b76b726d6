"""`--backend auto`: the backend is picked from what the model is."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_tui.backends.detect import detect_backend
from persona_tui.errors import ModelLoadError


def test_gguf_file_is_llama_cpp(tiny_gguf: Path, tmp_path: Path) -> None:
    assert detect_backend(str(tiny_gguf)) == "llama.cpp"
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(tiny_gguf.read_bytes()[:64])
    assert detect_backend(str(renamed)) == "llama.cpp"  # by its magic bytes


def test_mlx_folder_is_mlx(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert detect_backend(str(tmp_path)) == "mlx"


def test_server_reference_is_openai() -> None:
    assert detect_backend("openai:http://127.0.0.1:8080/v1#m") == "openai"


def test_anything_else_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        detect_backend(str(tmp_path / "missing.gguf"))
    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        detect_backend(str(notes))
    with pytest.raises(ModelLoadError, match="not an MLX model folder"):
        detect_backend(str(tmp_path))


def test_url_without_prefix_and_folder_of_ggufs_get_hints(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="openai:http://gpu:8000/v1#MODEL"):
        detect_backend("http://gpu:8000/v1")
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match=r"pick one: a\.gguf"):
        detect_backend(str(tmp_path))
