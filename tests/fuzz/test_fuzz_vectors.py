"""Fuzzing the persona-vector files: a mutated control-vector GGUF or vector record reads
or gives one clear VectorsError naming the file. Reproducible (derandomized, no example
database)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from persona_tui.vectors.files import read_control_vector, write_control_vector
from persona_tui.vectors.record import read_record, write_record
from tests.fuzz.hostile import check_one
from tests.fuzz.test_fuzz_gguf import mutated_gguf
from tests.fuzz.test_fuzz_readers import fuzz, toml_inputs
from tests.unit.test_vector_files import record, vector


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, str]:
    """A folder for the inputs, a control vector's bytes and a record's text."""
    folder = tmp_path_factory.mktemp("fuzz-vectors")
    write_control_vector(folder / "seed.gguf", vector())
    write_record(folder / "seed.toml", record())
    return folder, (folder / "seed.gguf").read_bytes(), (folder / "seed.toml").read_text()


@settings(
    max_examples=600,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_control_vector_reader(seeds: tuple[Path, bytes, str], data: st.DataObject) -> None:
    folder, raw, _ = seeds
    mutated = data.draw(mutated_gguf(raw, len(raw)))
    check_one(folder / "trait.gguf", mutated, read_control_vector)


def test_vector_record_reader(seeds: tuple[Path, bytes, str]) -> None:
    folder, _, text = seeds

    @fuzz(800)
    @given(data=toml_inputs([text]))
    def run(data: bytes) -> None:
        check_one(folder / "trait.toml", data, read_record)

    run()
