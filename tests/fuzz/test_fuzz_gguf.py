"""Fuzzing the GGUF header reader: a mutated tiny GGUF reads or gives one clear error.

The inputs are the suite's tiny GGUF with bytes flipped, cut short, or with a length,
count or type field overwritten (past the magic, which is easy to check, and inside the
header, where the reader looks; a cut may fall anywhere). Reproducible (derandomized,
no example database).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from persona_tui.backends.gguf_file import read_gguf_header
from tests import tiny_gguf as tiny_writer
from tests.fuzz.hostile import check_one

# Values that are lengths, counts and types at their edges.
_EDGES = [0, 1, 7, 8, 9, 12, 13, 2**31, 2**32 - 1, 2**63, 2**64 - 1]


@st.composite
def mutated_gguf(draw: st.DrawFn, seed: bytes, header_end: int) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 3))):
        if len(data) <= 4:
            break
        how = draw(st.sampled_from(["flip", "truncate", "u64", "u32"]))
        at = draw(st.integers(4, min(len(data), header_end) - 1))  # past the magic
        if how == "flip":
            data[at] = draw(st.integers(0, 255))
        elif how == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        else:
            width = 8 if how == "u64" else 4
            value = draw(st.one_of(st.sampled_from(_EDGES), st.integers(0, 2**64 - 1)))
            data[at : at + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
    return bytes(data)


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, int]:
    """A folder for the inputs, the tiny GGUF's bytes and where its header ends."""
    folder = tmp_path_factory.mktemp("fuzz-gguf")
    path = tiny_writer.write_tiny_gguf(folder / "seed.gguf")
    return folder, path.read_bytes(), read_gguf_header(path).data_offset


@settings(
    max_examples=1000,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_gguf_header_reader(seed: tuple[Path, bytes, int], data: st.DataObject) -> None:
    folder, raw, header_end = seed
    check_one(folder / "model.gguf", data.draw(mutated_gguf(raw, header_end)), read_gguf_header)
