"""A trait's directions as a llama.cpp control-vector GGUF (`<trait>.gguf`), written and read.

The format is llama.cpp's own (`llama-cli --control-vector FILE`, repeng's
`ControlVector.export_gguf`): a GGUF whose `general.architecture` is `controlvector`, with
the keys `controlvector.model_hint` (the architecture of the model the directions were
extracted on, e.g. `gemma3`) and `controlvector.layer_count` (the number of directions), and
one 1-D float32 tensor `direction.N` of n_embd values per layer N >= 1. llama.cpp's loader
(`common_control_vector_load_one`) reads only the tensors: `direction.N` goes to offset
`(N - 1) * n_embd` of the buffer `llama_set_adapter_cvec` takes (which starts at layer 1),
and is added to the output of block N, the tensor `l_out-N` the extraction reads
(docs/persona-vectors.md, Files). Layer 0 cannot be addressed.

Written with the `gguf` package (llama.cpp's own writer), through a temporary file renamed
over the target (`_util.atomic`). Reading checks everything llama.cpp would trip over, and
more (finite values, one n_embd, the layer count), and raises `VectorsError` naming the
file and what is wrong. gguf and numpy are imported inside the functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from persona_tui._util.atomic import atomic_output, describe_os_error
from persona_tui.errors import VectorsError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

ARCHITECTURE: Final = "controlvector"
MODEL_HINT_KEY: Final = f"{ARCHITECTURE}.model_hint"
LAYER_COUNT_KEY: Final = f"{ARCHITECTURE}.layer_count"
TENSOR_PREFIX: Final = "direction."
SUFFIX: Final = ".gguf"
_TENSOR_NAME = re.compile(r"direction\.([1-9][0-9]*)")


@dataclass(frozen=True, eq=False)
class ControlVector:
    """The contents of a control-vector GGUF: a float32 direction per layer (N >= 1, all of
    one length, n_embd) and the model architecture they were extracted on."""

    model_hint: str
    directions: Mapping[int, NDArray[np.float32]]

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted(self.directions))

    @property
    def n_embd(self) -> int:
        return int(next(iter(self.directions.values())).shape[0])

    def flat(self, layer_count: int) -> NDArray[np.float32]:
        """The buffer `llama_set_adapter_cvec` takes: `layer_count` rows of n_embd values,
        row N - 1 holding layer N's direction (zeros where there is none), as llama.cpp's
        loader lays out a control-vector file."""
        import numpy as np

        if self.layers and self.layers[-1] > layer_count:
            raise VectorsError(
                f"the control vector has a direction for layer {self.layers[-1]}, but the "
                f"model has {layer_count} layers that can be steered"
            )
        buffer = np.zeros((layer_count, self.n_embd), dtype=np.float32)
        for layer, direction in self.directions.items():
            buffer[layer - 1] = direction
        return buffer.reshape(-1)


def write_control_vector(path: Path, vector: ControlVector) -> None:
    """Write `vector` to `path` as llama.cpp's control-vector GGUF, atomically; readable
    by all (0644) like its record and answers, since it is meant to be shared."""
    import gguf
    import numpy as np

    problem = _check_directions(vector.directions)
    if problem:
        raise VectorsError(f"{path}: cannot write the control vector: {problem}")
    try:
        with atomic_output(path) as temporary:
            writer = gguf.GGUFWriter(temporary, ARCHITECTURE)
            writer.add_string(MODEL_HINT_KEY, vector.model_hint)
            writer.add_uint32(LAYER_COUNT_KEY, len(vector.directions))
            for layer in vector.layers:
                data = np.ascontiguousarray(vector.directions[layer], dtype=np.float32)
                writer.add_tensor(f"{TENSOR_PREFIX}{layer}", data)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
            temporary.chmod(0o644)
    except OSError as error:
        raise VectorsError(f"{path}: cannot write: {describe_os_error(error)}") from error


def read_control_vector(path: Path) -> ControlVector:
    """Read and check a control-vector GGUF; VectorsError names the file and the problem."""
    import gguf
    import numpy as np

    if not path.is_file():
        raise VectorsError(f"{path}: no such control-vector file")
    try:
        reader = gguf.GGUFReader(path)
    except OSError as error:
        raise VectorsError(f"{path}: cannot read: {describe_os_error(error)}") from error
    except Exception as error:  # gguf raises many kinds on a corrupt or truncated file
        raise VectorsError(f"{path}: not a readable GGUF file ({error})") from error
    architecture = _string_field(path, reader, "general.architecture")
    if architecture != ARCHITECTURE:
        raise VectorsError(
            f"{path}: a GGUF of architecture {architecture!r}, not a control vector "
            f"({ARCHITECTURE!r})"
        )
    model_hint = _string_field(path, reader, MODEL_HINT_KEY)
    layer_count = _int_field(path, reader, LAYER_COUNT_KEY)
    directions: dict[int, NDArray[np.float32]] = {}
    for tensor in reader.tensors:
        match = _TENSOR_NAME.fullmatch(tensor.name)
        if match is None:
            raise VectorsError(
                f"{path}: tensor {tensor.name!r} is not a direction ('direction.N', N >= 1)"
            )
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32 or len(tensor.shape) != 1:
            raise VectorsError(f"{path}: tensor {tensor.name!r} is not a 1-D float32 vector")
        layer = int(match.group(1))
        if layer in directions:
            raise VectorsError(f"{path}: tensor {tensor.name!r} appears twice")
        directions[layer] = np.array(tensor.data, dtype=np.float32).reshape(-1)
    if not directions:
        raise VectorsError(f"{path}: holds no direction tensors")
    problem = _check_directions(directions)
    if problem:
        raise VectorsError(f"{path}: {problem}")
    if layer_count != len(directions):
        raise VectorsError(
            f"{path}: {LAYER_COUNT_KEY} says {layer_count} but the file holds "
            f"{len(directions)} directions"
        )
    return ControlVector(model_hint, dict(sorted(directions.items())))


def _check_directions(directions: Mapping[int, Any]) -> str:
    """What is wrong with a set of directions ("" if nothing)."""
    import numpy as np

    if not directions:
        return "no directions"
    lengths = set()
    for layer, direction in directions.items():
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 1:
            return f"layer {layer!r} is not a layer N >= 1 (llama.cpp cannot steer layer 0)"
        array = np.asarray(direction)
        if array.ndim != 1 or array.shape[0] == 0:
            return f"the direction of layer {layer} is not a non-empty 1-D vector"
        if not np.all(np.isfinite(array)):
            return f"the direction of layer {layer} holds a value that is not finite"
        lengths.add(array.shape[0])
    if len(lengths) > 1:
        return f"the directions differ in length ({', '.join(map(str, sorted(lengths)))})"
    return ""


def _field(path: Path, reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        raise VectorsError(f"{path}: the key {key!r} is missing")
    try:
        return field.contents()
    except Exception as error:  # a corrupt field's parts do not decode
        raise VectorsError(f"{path}: the key {key!r} cannot be read ({error})") from error


def _string_field(path: Path, reader: Any, key: str) -> str:
    value = _field(path, reader, key)
    if not isinstance(value, str):
        raise VectorsError(f"{path}: the key {key!r} is not a string")
    return value


def _int_field(path: Path, reader: Any, key: str) -> int:
    value = _field(path, reader, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VectorsError(f"{path}: the key {key!r} is not a positive integer")
    return value
