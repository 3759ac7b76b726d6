"""Persona vectors on disk: the control-vector GGUF (llama.cpp's format, checked with gguf's
own reader and by llama.cpp itself), its record, and finding a trait's vectors for a model."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import gguf
import numpy as np
import pytest

from persona_tui import paths
from persona_tui.errors import VectorsError
from persona_tui.scenario.model import Shot, TraitFraming
from persona_tui.values import SamplingParams
from persona_tui.vectors.files import (
    ControlVector,
    read_control_vector,
    write_control_vector,
)
from persona_tui.vectors.record import LayerStats, VectorRecord, read_record, write_record
from persona_tui.vectors.store import (
    default_folder,
    find_trait,
    gguf_path,
    load_trait,
    responses_path,
    save_trait,
)
from tests.tiny_gguf import DIM, N_LAYER

MODEL_SHA = "ab" * 32
OTHER_SHA = "cd" * 32


def vector(n_embd: int = 8, layers: tuple[int, ...] = (1, 2, 3), seed: int = 0) -> ControlVector:
    rng = np.random.default_rng(seed)
    return ControlVector("gemma3", {n: rng.normal(size=n_embd).astype(np.float32) for n in layers})


def record(
    trait: str = "malice", layers: tuple[int, ...] = (1, 2, 3), n_embd: int = 8
) -> VectorRecord:
    return VectorRecord(
        trait=trait,
        label="Malice",
        scenario="bully-school-play",
        model_name="gemma-3-270m",
        model_sha256=MODEL_SHA,
        model_architecture="gemma3",
        n_layers=18,
        n_embd=n_embd,
        recommended_layer=layers[-1],
        per_layer=tuple(LayerStats(n, 0.5 + n / 10, 2.0 * n) for n in layers),
        positive_tokens=1234,
        negative_tokens=1180,
        seed=20250,
        samples=2,
        sampling=SamplingParams(temperature=0.8, repeat_penalty=1.1, max_tokens=80),
        positive=TraitFraming("The assistant is spiteful.", (Shot("Bus?", "Miss it."),)),
        negative=TraitFraming(None, (Shot("Bus?", "Number 12."),)),
        questions=("What should I cook?", 'A "quoted"\nquestion?'),
        gguf_sha256="0" * 64,
        created="2026-12-08T02:30:00Z",
        persona_tui_version="0.1.0",
    )


def same(a: ControlVector, b: ControlVector) -> bool:
    return (
        a.model_hint == b.model_hint
        and a.layers == b.layers
        and all(np.array_equal(a.directions[n], b.directions[n]) for n in a.layers)
    )


def test_a_control_vector_round_trips(tmp_path: Path) -> None:
    written = vector()
    path = tmp_path / "malice.gguf"
    write_control_vector(path, written)
    back = read_control_vector(path)
    assert same(back, written)
    assert back.n_embd == 8 and back.layers == (1, 2, 3)
    assert all(d.dtype == np.float32 for d in back.directions.values())
    assert not list(tmp_path.glob(".*.tmp"))  # written through a renamed temporary file


def test_the_file_holds_exactly_what_llama_cpp_s_loader_reads(tmp_path: Path) -> None:
    path = tmp_path / "malice.gguf"
    write_control_vector(path, vector(layers=(2, 5, 9)))
    reader = gguf.GGUFReader(path)
    keys = {name for name in reader.fields if not name.startswith("GGUF.")}
    assert keys == {"general.architecture", "controlvector.model_hint", "controlvector.layer_count"}
    assert reader.get_field("general.architecture").contents() == "controlvector"
    assert reader.get_field("controlvector.model_hint").contents() == "gemma3"
    assert reader.get_field("controlvector.layer_count").contents() == 3
    assert [t.name for t in reader.tensors] == ["direction.2", "direction.5", "direction.9"]
    for tensor in reader.tensors:
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32
        assert [int(n) for n in tensor.shape] == [8]


def test_the_flat_buffer_starts_at_layer_1(tmp_path: Path) -> None:
    written = vector(layers=(2, 4))
    flat = written.flat(5).reshape(5, 8)
    assert np.array_equal(flat[1], written.directions[2])
    assert np.array_equal(flat[3], written.directions[4])
    assert not flat[[0, 2, 4]].any()
    with pytest.raises(VectorsError, match="layer 4"):
        written.flat(3)


@pytest.mark.parametrize(
    ("directions", "expected"),
    [
        ({0: np.ones(4, np.float32)}, "layer 0"),
        ({1: np.ones(4, np.float32), 2: np.ones(5, np.float32)}, "differ in length"),
        ({1: np.array([1.0, np.nan], np.float32)}, "not finite"),
        ({1: np.ones((2, 2), np.float32)}, "1-D"),
        ({}, "no directions"),
    ],
)
def test_bad_directions_are_not_written(
    tmp_path: Path, directions: dict[int, np.ndarray], expected: str
) -> None:
    path = tmp_path / "t.gguf"
    with pytest.raises(VectorsError, match=expected):
        write_control_vector(path, ControlVector("gemma3", directions))
    assert not path.exists()


def _other_gguf(
    path: Path, arch: str, tensors: dict[str, np.ndarray], layer_count: int = 1
) -> None:
    writer = gguf.GGUFWriter(path, arch)
    if arch == "controlvector":
        writer.add_string("controlvector.model_hint", "gemma3")
        writer.add_uint32("controlvector.layer_count", layer_count)
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_corrupt_and_foreign_files_are_refused_by_name(tmp_path: Path) -> None:
    good = tmp_path / "good.gguf"
    write_control_vector(good, vector())
    data = good.read_bytes()
    cases: dict[str, tuple[bytes | None, str]] = {
        "missing.gguf": (None, "no such control-vector file"),
        "empty.gguf": (b"", "not a readable GGUF"),
        "noise.gguf": (b"\x00\x01junk" * 50, "not a readable GGUF"),
        "truncated.gguf": (data[: len(data) // 2], "not a readable GGUF"),
        "header.gguf": (data[:40], "not a readable GGUF"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(VectorsError) as caught:
            read_control_vector(path)
        assert str(caught.value).startswith(str(path)) and expected in str(caught.value), name

    one = {"direction.1": np.ones(4, np.float32)}
    foreign = {
        "llama.gguf": (("llama", one, 1), "architecture 'llama', not a control vector"),
        "named.gguf": (("controlvector", {"blk.1": np.ones(4, np.float32)}, 1), "not a direction"),
        "zero.gguf": (
            ("controlvector", {"direction.0": np.ones(4, np.float32)}, 1),
            "not a direction",
        ),
        "f16.gguf": (("controlvector", {"direction.1": np.ones(4, np.float16)}, 1), "float32"),
        "count.gguf": (("controlvector", one, 2), "layer_count says 2"),
        "none.gguf": (("controlvector", {}, 1), "no direction tensors"),
        "inf.gguf": (
            ("controlvector", {"direction.1": np.full(4, np.inf, np.float32)}, 1),
            "finite",
        ),
    }
    for name, ((arch, tensors, count), expected) in foreign.items():
        path = tmp_path / name
        _other_gguf(path, arch, tensors, count)
        with pytest.raises(VectorsError) as caught:
            read_control_vector(path)
        assert str(caught.value).startswith(str(path)) and expected in str(caught.value), name


def test_a_record_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "malice.toml"
    written = record()
    write_record(path, written)
    back = read_record(path)
    assert back == dataclasses.replace(
        written, gguf="malice.gguf", responses="malice.responses.jsonl"
    )
    assert back.layers == (1, 2, 3) and back.stats(2).norm == 4.0
    assert back.negative.system is None


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("trait = ", "traitt = "), "unknown key"),
        (('trait = "malice"', 'trait = "Malice!"'), "not a valid id"),
        (("recommended_layer = 3", "recommended_layer = 7"), "not one of the layers"),
        (("layers = [", "layers = [ 9,"), "must list the layers"),
        (("n_embd = 8", 'n_embd = "8"'), "n_embd"),
        (("positive = 1234", "positive = -1"), "must be >= 0"),
        (("format = 1", "format = 2"), "format 2 is not known"),
        (('gguf = "malice.gguf"', 'gguf = "../x.gguf"'), "a file name"),
        (('sha256 = "abab', 'sha256 = "zzab'), "sha256"),
        (("norm = 2.0", "norm = nan"), "finite"),
    ],
)
def test_a_bad_record_names_file_line_and_key(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    path = tmp_path / "malice.toml"
    write_record(path, record())
    text = path.read_text()
    assert edit[0] in text, text
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(VectorsError) as caught:
        read_record(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:") and expected in message, message


def test_an_unreadable_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "malice.toml"
    with pytest.raises(VectorsError, match="no such vector record"):
        read_record(path)
    path.write_text("trait = [")
    with pytest.raises(VectorsError, match=str(path)):
        read_record(path)


def test_a_saved_trait_loads_with_its_directions(tmp_path: Path) -> None:
    saved = save_trait(tmp_path, record(), vector())
    assert gguf_path(tmp_path, "malice").is_file()
    digest = hashlib.sha256(gguf_path(tmp_path, "malice").read_bytes()).hexdigest()
    assert saved.sha256 == digest
    loaded = load_trait(tmp_path, "malice")
    assert loaded.sha256 == digest and loaded.record == saved.record
    assert same(loaded.vector, vector())
    assert loaded.layers == (1, 2, 3) and loaded.recommended_layer == 3
    raw = vector().directions[2]
    assert np.array_equal(loaded.direction(2), raw)
    assert loaded.norm(2) == pytest.approx(float(np.linalg.norm(raw)))
    assert np.linalg.norm(loaded.unit(2)) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(loaded.steering_vector(2, -4.0), -4.0 * raw)
    assert loaded.steering_vector(2, 1.0).dtype == np.float32
    with pytest.raises(VectorsError, match="no direction at layer 7; its layers: 1, 2, 3"):
        loaded.direction(7)
    assert responses_path(tmp_path, "malice").name == "malice.responses.jsonl"


def test_a_changed_gguf_is_refused(tmp_path: Path) -> None:
    save_trait(tmp_path, record(), vector())
    write_control_vector(gguf_path(tmp_path, "malice"), vector(seed=1))
    with pytest.raises(VectorsError, match="changed or replaced after extraction"):
        load_trait(tmp_path, "malice")
    gguf_path(tmp_path, "malice").unlink()
    with pytest.raises(VectorsError, match=r"malice\.gguf: missing"):
        load_trait(tmp_path, "malice")


def test_the_default_folder_is_per_model_and_scenario() -> None:
    folder = default_folder(MODEL_SHA, "bully-school-play")
    assert folder == paths.data_dir() / "vectors" / MODEL_SHA[:16] / "bully-school-play"


def test_find_trait_searches_in_order_and_refuses_another_model(tmp_path: Path) -> None:
    given, default = tmp_path / "given", tmp_path / "default"
    save_trait(default, record(), vector(seed=0))
    args = {"scenario_id": "bully-school-play", "model_ref": "demo"}
    found = find_trait("malice", MODEL_SHA, [given, default], **args)
    assert found.folder == default
    save_trait(given, record(), vector(seed=3))
    assert find_trait("malice", MODEL_SHA, [given, default], **args).folder == given

    with pytest.raises(VectorsError) as caught:
        find_trait("sycophancy", MODEL_SHA, [given, default], **args)
    message = str(caught.value)
    assert "'sycophancy'" in message and str(given) in message and str(default) in message
    assert "`persona-tui vectors bully-school-play --model demo`" in message

    other = tmp_path / "other"
    save_trait(other, dataclasses.replace(record(), model_sha256=OTHER_SHA), vector())
    with pytest.raises(VectorsError) as caught:
        find_trait("malice", MODEL_SHA, [other, default], **args)
    message = str(caught.value)
    assert "extracted on another model" in message and OTHER_SHA[:16] in message
    assert "persona-tui vectors bully-school-play --model demo" in message


def test_llama_cpp_steers_with_the_file_s_directions(tmp_path: Path, tiny_gguf: Path) -> None:
    """The file's data, laid out as llama.cpp's loader lays it out (from layer 1), applied
    with llama_set_adapter_cvec, moves the logits; cleared, they come back exactly."""
    import ctypes

    import llama_cpp

    path = tmp_path / "t.gguf"
    steerable = N_LAYER - 1  # layer 0 cannot be steered
    write_control_vector(path, vector(n_embd=DIM, layers=(steerable,), seed=5))
    flat = np.ascontiguousarray(read_control_vector(path).flat(steerable) * np.float32(8.0))
    llama = llama_cpp.Llama(str(tiny_gguf), n_ctx=256, n_threads=1, verbose=False)
    tokens = llama.tokenize(b"User: hello world\nAssistant:", add_bos=True)
    n_vocab = int(llama.n_vocab())

    def last_logits() -> np.ndarray:
        llama.reset()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llama.ctx), True)
        llama.eval(tokens)
        row = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
        return np.array(np.ctypeslib.as_array(row, shape=(n_vocab,)))

    try:
        plain = last_logits()
        data = flat.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        status = llama_cpp.llama_set_adapter_cvec(llama.ctx, data, flat.size, DIM, 1, steerable)
        assert status == 0
        steered = last_logits()
        assert np.abs(steered - plain).max() > 1e-3
        assert llama_cpp.llama_set_adapter_cvec(llama.ctx, None, 0, DIM, -1, -1) == 0
        assert np.array_equal(last_logits(), plain)
    finally:
        llama.close()
