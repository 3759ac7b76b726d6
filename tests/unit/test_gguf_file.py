"""The GGUF header reader: what it reads, its tables against the `gguf` package's, and
one clear error naming the file for each kind of broken file."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_tui.backends.gguf_file import GGML_TYPE_SIZES, LLAMA_FTYPE_NAMES, read_gguf_header
from persona_tui.errors import ModelLoadError
from tests import tiny_gguf as tiny_writer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_writer.write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_reads_the_metadata_and_the_tensor_table(tiny: Path) -> None:
    header = read_gguf_header(tiny)
    assert header.architecture == "llama"
    assert header.context_length == tiny_writer.CONTEXT_LENGTH
    assert header.file_size == tiny.stat().st_size
    assert header.array_lengths["tokenizer.ggml.tokens"] > 256
    assert "blk.0.attn_q.weight" in {t.name for t in header.tensors}
    assert header.data_offset % 32 == 0


def test_tables_agree_with_the_gguf_package() -> None:
    gguf = pytest.importorskip("gguf")
    theirs = {int(k): tuple(v) for k, v in gguf.GGML_QUANT_SIZES.items()}
    both = set(theirs) & set(GGML_TYPE_SIZES)
    assert both and {k: GGML_TYPE_SIZES[k] for k in both} == {k: theirs[k] for k in both}
    names = {
        int(m.value): "F32" if m.name == "ALL_F32" else m.name.removeprefix("MOSTLY_")
        for m in gguf.LlamaFileType
    }
    known = set(names) & set(LLAMA_FTYPE_NAMES)
    assert known and {k: LLAMA_FTYPE_NAMES[k] for k in known} == {k: names[k] for k in known}


def test_each_broken_file_is_one_error_naming_it_and_the_fault(tiny: Path, tmp_path: Path) -> None:
    data = tiny.read_bytes()
    cases = {
        "empty": (b"", "empty"),
        "text": (b"this is not a model\n" * 10, "Not a GGUF model file"),
        "magic-only": (b"GGUF", "ends inside the header"),
        "version-1": (b"GGUF" + (1).to_bytes(4, "little") + data[8:], "version 1 is too old"),
        "version-99": (b"GGUF" + (99).to_bytes(4, "little") + data[8:], "unsupported GGUF"),
        "huge-count": (data[:8] + (2**60).to_bytes(8, "little") + data[16:], "implausible"),
        "cut-in-metadata": (data[:2000], "tokenizer.ggml.tokens"),
        "one-byte-short": (data[:-1], "truncated"),
    }
    for name, (content, says) in cases.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(content)
        with pytest.raises(ModelLoadError, match=says) as caught:
            read_gguf_header(path)
        assert str(path) in str(caught.value), name
    for path, says in ((tmp_path / "missing.gguf", "not found"), (tmp_path, "a directory")):
        with pytest.raises(ModelLoadError, match=says):
            read_gguf_header(path)
