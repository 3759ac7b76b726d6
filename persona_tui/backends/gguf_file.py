"""Read and check a GGUF file's header in pure Python: the file format, not an engine.

GGUF is the model and LoRA-adapter file of llama.cpp, read by the llama.cpp engine,
training (the base model, the adapters it writes) and the model scan, so it lives here,
beside the engines, where any of them may import it.

llama.cpp prints to the terminal and can misbehave on files that are not GGUF or are
cut short, so the engine first checks here that the magic is right, the metadata and
tensor table parse, and every tensor's data lies inside the file. The metadata read
here (architecture, file type, chat template, ...) also feeds the session record.
Arrays (e.g. the 262k-entry token list) are skipped, only their length is kept.

Why not the `gguf` package's GGUFReader (issue 20), measured in one run on a loaded
2-core AMD EPYC (load average 10-12), gguf 0.19.0, numpy 2.4.6:
- it is slow on real models: it turns every entry of every array into numpy views, so
  the demo model's header (Gemma 3 270M Q4_K_M, 253 MB, 262,144 vocabulary strings)
  took 36.5-40.6 s against 0.11-0.13 s here; the suite's tiny GGUF (563 KB) 51-58 ms
  against 0.2-0.3 ms;
- `import gguf` costs 0.5 s (numpy), and gguf would have to become a core dependency;
- on hostile files it raises bare IndexError/ValueError that name neither the file nor
  what is wrong ("index 0 is out of bounds for axis 0 with size 0" for a file cut in its
  header, "cannot reshape array of size 6820 into shape (64,128)" for one cut in its
  tensors, "When changing to a larger dtype, ..." for one a byte short; no check of the
  counts against the file size), where every error here is a ModelLoadError naming the
  file and the problem (tests/fuzz/test_fuzz_gguf.py checks it).
Its tables are the same data as `GGML_TYPE_SIZES` and `LLAMA_FTYPE_NAMES` below (equal
in gguf 0.19.0; tests/unit/test_gguf_file.py keeps them equal), but importing them loads
the whole package.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from persona_tui.errors import ModelLoadError

GGUF_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32

# GGUF metadata value types.
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL = range(8)
_STRING, _ARRAY, _UINT64, _INT64, _FLOAT64 = 8, 9, 10, 11, 12
_SCALAR_FORMATS: dict[int, str] = {
    _UINT8: "<B",
    _INT8: "<b",
    _UINT16: "<H",
    _INT16: "<h",
    _UINT32: "<I",
    _INT32: "<i",
    _FLOAT32: "<f",
    _BOOL: "<?",
    _UINT64: "<Q",
    _INT64: "<q",
    _FLOAT64: "<d",
}

# ggml tensor types: (elements per block, bytes per block), from ggml's type traits.
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 40),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
    40: (64, 36),  # Q1_0
    41: (128, 18),  # NVFP4
}

# llama.cpp's `enum llama_ftype` (general.file_type): the file's dominant quantization.
LLAMA_FTYPE_NAMES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
}

MetadataValue = str | int | float | bool


@dataclass(frozen=True)
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # relative to the start of the data section


@dataclass(frozen=True)
class GGUFHeader:
    """The parsed header of a GGUF file: scalar metadata, array lengths, tensor table."""

    version: int
    metadata: dict[str, MetadataValue]
    array_lengths: dict[str, int]
    tensors: tuple[TensorEntry, ...]
    data_offset: int
    file_size: int

    def get_str(self, key: str) -> str | None:
        value = self.metadata.get(key)
        return value if isinstance(value, str) else None

    def get_int(self, key: str) -> int | None:
        value = self.metadata.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        return value

    @property
    def architecture(self) -> str:
        return self.get_str("general.architecture") or ""

    @property
    def context_length(self) -> int | None:
        return self.get_int(f"{self.architecture}.context_length")

    @property
    def chat_template(self) -> str | None:
        return self.get_str("tokenizer.chat_template")

    @property
    def quantization(self) -> str:
        """general.file_type as llama.cpp names it (e.g. "Q4_K_M"); "" when absent."""
        file_type = self.get_int("general.file_type")
        if file_type is None:
            return ""
        return LLAMA_FTYPE_NAMES.get(file_type, f"ftype {file_type}")


class _Corrupt(Exception):
    """Internal: the header does not parse; the message says where."""


class _Reader:
    def __init__(self, buffer: mmap.mmap, size: int) -> None:
        self.buf = buffer
        self.size = size
        self.pos = 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise _Corrupt(
                f"the file ends inside the header ({what} at byte {self.pos} needs {n} bytes, "
                f"the file has {self.size}); it is truncated or not a model"
            )

    def unpack(self, fmt: str, what: str) -> int | float | bool:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value  # type: ignore[no-any-return]

    def u32(self, what: str) -> int:
        return int(self.unpack("<I", what))

    def u64(self, what: str) -> int:
        return int(self.unpack("<Q", what))

    def string(self, what: str) -> str:
        length = self.u64(what + " length")
        self.need(length, what)
        raw = self.buf[self.pos : self.pos + length]
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Corrupt(f"{what} at byte {self.pos - length} is not valid UTF-8") from exc


def read_gguf_header(path: Path) -> GGUFHeader:
    """Parse and check the header of the GGUF file at `path`.

    Raises ModelLoadError naming the path and what is wrong: missing, a directory,
    unreadable, empty, not GGUF, an unsupported version, or corrupt/truncated.
    """
    if not path.exists():
        raise ModelLoadError(f"Model file not found: {path}")
    if path.is_dir():
        raise ModelLoadError(f"Model path is a directory, not a GGUF file: {path}")
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            if size == 0:
                raise ModelLoadError(f"Model file is empty (0 bytes): {path}")
            magic = handle.read(4)
            if magic != GGUF_MAGIC:
                raise ModelLoadError(
                    f"Not a GGUF model file (it starts with {magic!r}, expected b'GGUF'): "
                    f"{path}. llama.cpp models are .gguf files."
                )
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
                try:
                    return _parse(buffer, size)
                except _Corrupt as exc:
                    raise ModelLoadError(f"Corrupt GGUF file {path}: {exc}") from None
    except OSError as exc:
        raise ModelLoadError(f"Cannot read model file {path}: {exc.strerror or exc}") from exc


def _parse(buffer: mmap.mmap, size: int) -> GGUFHeader:
    reader = _Reader(buffer, size)
    reader.pos = 4
    version = reader.u32("version")
    if version not in (2, 3):
        if version in (1,):
            raise _Corrupt("GGUF version 1 is too old for llama.cpp; convert the model again")
        raise _Corrupt(
            f"unsupported GGUF version {version} (a big-endian file, or not a model file)"
        )
    n_tensors = reader.u64("tensor count")
    n_kv = reader.u64("metadata count")
    # Each entry takes at least 8 bytes, so larger counts cannot fit in the file.
    if n_tensors > size // 8 or n_kv > size // 8:
        raise _Corrupt(f"implausible counts ({n_tensors} tensors, {n_kv} metadata keys)")
    metadata: dict[str, MetadataValue] = {}
    array_lengths: dict[str, int] = {}
    for index in range(n_kv):
        key = reader.string(f"metadata key #{index}")
        value_type = reader.u32(f"type of {key}")
        if value_type == _ARRAY:
            item_type = reader.u32(f"item type of {key}")
            count = reader.u64(f"length of {key}")
            array_lengths[key] = count
            _skip_array(reader, key, item_type, count)
        else:
            metadata[key] = _read_scalar(reader, key, value_type)
    alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise _Corrupt(f"general.alignment {alignment!r} is not a power of two")
    tensors: list[TensorEntry] = []
    for index in range(n_tensors):
        name = reader.string(f"tensor name #{index}")
        n_dims = reader.u32(f"dimension count of {name}")
        if n_dims > 8:
            raise _Corrupt(f"tensor {name} has {n_dims} dimensions")
        shape = tuple(reader.u64(f"shape of {name}") for _ in range(n_dims))
        ggml_type = reader.u32(f"type of {name}")
        offset = reader.u64(f"offset of {name}")
        tensors.append(TensorEntry(name, shape, ggml_type, offset))
    data_offset = -(-reader.pos // alignment) * alignment
    _check_tensor_extents(tensors, data_offset, size)
    return GGUFHeader(
        version=version,
        metadata=metadata,
        array_lengths=array_lengths,
        tensors=tuple(tensors),
        data_offset=data_offset,
        file_size=size,
    )


def _read_scalar(reader: _Reader, key: str, value_type: int) -> MetadataValue:
    if value_type == _STRING:
        return reader.string(f"value of {key}")
    fmt = _SCALAR_FORMATS.get(value_type)
    if fmt is None:
        raise _Corrupt(f"metadata {key} has unknown value type {value_type}")
    return reader.unpack(fmt, f"value of {key}")


def _skip_array(reader: _Reader, key: str, item_type: int, count: int) -> None:
    if item_type == _STRING:
        if count > reader.size // 8:
            raise _Corrupt(f"array {key} claims {count} strings")
        unpack_from = struct.unpack_from
        buf, pos, size = reader.buf, reader.pos, reader.size
        for _ in range(count):
            if pos + 8 > size:
                raise _Corrupt(f"the file ends inside the strings of {key}; it is truncated")
            pos += 8 + unpack_from("<Q", buf, pos)[0]
        if pos > size:
            raise _Corrupt(f"the file ends inside the strings of {key}; it is truncated")
        reader.pos = pos
        return
    fmt = _SCALAR_FORMATS.get(item_type)
    if fmt is None:
        raise _Corrupt(f"array {key} has unsupported item type {item_type}")
    total = struct.calcsize(fmt) * count
    reader.need(total, f"items of {key}")
    reader.pos += total


def _check_tensor_extents(tensors: list[TensorEntry], data_offset: int, size: int) -> None:
    for tensor in tensors:
        start = data_offset + tensor.offset
        nbytes = _tensor_nbytes(tensor)
        end = start + (nbytes if nbytes is not None else 1)
        if end > size:
            raise _Corrupt(
                f"tensor {tensor.name} needs bytes {start}..{end} but the file has only "
                f"{size} bytes; it is truncated (an interrupted download or copy?)"
            )


def _tensor_nbytes(tensor: TensorEntry) -> int | None:
    sizes = GGML_TYPE_SIZES.get(tensor.ggml_type)
    if sizes is None:
        return None  # a type newer than this table: llama.cpp checks it
    block, type_size = sizes
    elements = 1
    for dim in tensor.shape:
        elements *= dim
    return elements // block * type_size
