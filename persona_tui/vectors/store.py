"""A trait's vectors loaded and found: the control-vector GGUF and its record, checked
against each other and against the model a run uses.

Layout: one folder per (model, scenario) by default, `<data>/vectors/<model sha256[:16]>/
<scenario id>/`, holding per trait `<trait>.gguf` (files.py), `<trait>.toml` (record.py)
and `<trait>.responses.jsonl`. `run --vectors DIR` names another folder (any folder
`persona-tui vectors` wrote), searched first, so one scenario's traits can steer another's
probes. Vectors extracted on another model are refused, whatever folder they are in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from persona_tui import paths
from persona_tui._util.atomic import describe_os_error
from persona_tui.errors import VectorsError
from persona_tui.vectors.files import (
    SUFFIX,
    ControlVector,
    read_control_vector,
    write_control_vector,
)
from persona_tui.vectors.record import (
    RESPONSES_SUFFIX,
    VectorRecord,
    read_record,
    record_path,
    write_record,
)

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

SHA_PREFIX = 16  # hex digits of the model's sha256 in the default folder's name


def gguf_path(folder: Path, trait: str) -> Path:
    return folder / f"{trait}{SUFFIX}"


def responses_path(folder: Path, trait: str) -> Path:
    return folder / f"{trait}{RESPONSES_SUFFIX}"


def default_folder(model_sha256: str, scenario_id: str) -> Path:
    """Where `persona-tui vectors SCENARIO --model M` saves by default."""
    return paths.vectors_dir() / model_sha256[:SHA_PREFIX] / scenario_id


@dataclass(frozen=True, eq=False)
class TraitVectors:
    """A trait's directions (float32 per layer) and the record they were saved with;
    `sha256` is the GGUF's (the one the record names, checked on loading)."""

    record: VectorRecord
    vector: ControlVector
    folder: Path

    @property
    def trait(self) -> str:
        return self.record.trait

    @property
    def sha256(self) -> str:
        return self.record.gguf_sha256

    @property
    def layers(self) -> tuple[int, ...]:
        return self.vector.layers

    @property
    def recommended_layer(self) -> int:
        return self.record.recommended_layer

    @property
    def gguf_path(self) -> Path:
        return self.folder / self.record.gguf_name

    def direction(self, layer: int) -> NDArray[np.float32]:
        """The raw direction at `layer` (the difference of means; a copy)."""
        found = self.vector.directions.get(layer)
        if found is None:
            raise VectorsError(
                f"{self.gguf_path}: trait {self.trait!r} has no direction at layer {layer}; "
                f"its layers: {', '.join(map(str, self.layers))}"
            )
        return found.copy()

    def norm(self, layer: int) -> float:
        import numpy as np

        return float(np.linalg.norm(self.direction(layer).astype(np.float64)))

    def unit(self, layer: int) -> NDArray[np.float32]:
        """The direction at `layer` scaled to norm 1 (a zero direction stays zero)."""
        import numpy as np

        norm = self.norm(layer)
        direction = self.direction(layer)
        return direction if norm == 0 else (direction / np.float32(norm)).astype(np.float32)

    def steering_vector(self, layer: int, scale: float) -> NDArray[np.float32]:
        """What steering adds at `layer`: `scale` times the raw direction."""
        import numpy as np

        return (self.direction(layer) * np.float32(scale)).astype(np.float32)


def save_trait(folder: Path, record: VectorRecord, vector: ControlVector) -> TraitVectors:
    """Write `<trait>.gguf`, then `<trait>.toml` with the GGUF's sha256 filled in (the
    record's own `gguf_sha256` is ignored). The responses JSONL is the caller's."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise VectorsError(f"{folder}: cannot create: {describe_os_error(error)}") from error
    path = gguf_path(folder, record.trait)
    write_control_vector(path, vector)
    saved = replace(
        record, gguf_sha256=_sha256(path), gguf=path.name, responses=record.responses_name
    )
    write_record(record_path(folder, record.trait), saved)
    return TraitVectors(saved, vector, folder)


def save_random_control(vectors: TraitVectors, folder: Path, seed: int = 0) -> TraitVectors:
    """A control for steering with `vectors`: trait `<trait>-random`, at every layer a
    direction drawn uniformly on the sphere (seeded) with the trait's norm there. Steering
    along it adds as much to the residual stream as the trait does, in no chosen direction;
    what the trait moves and it does not is the trait's own effect. Its record keeps the
    trait's norms; its separation is not measured (written as 0.5, gap 0: what a random
    direction separates on average).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    directions = {}
    for layer in vectors.layers:
        draw = rng.standard_normal(vectors.vector.n_embd)
        draw *= vectors.norm(layer) / np.linalg.norm(draw)
        directions[layer] = draw.astype(np.float32)
    trait = f"{vectors.trait}-random"
    record = replace(
        vectors.record,
        trait=trait,
        label=f"Random direction (a control for {vectors.record.label}, seed {seed})",
        seed=seed,
        per_layer=tuple(
            replace(stats, separation=0.5, gap=0.0) for stats in vectors.record.per_layer
        ),
        gguf="",
        responses="",
    )
    return save_trait(folder, record, ControlVector(vectors.vector.model_hint, directions))


def load_trait(folder: Path, trait_id: str) -> TraitVectors:
    """A trait's vectors from `folder`, the GGUF checked against the record (its sha256,
    layers, n_embd and architecture)."""
    record = read_record(record_path(folder, trait_id))
    where = record_path(folder, trait_id)
    if record.trait != trait_id:
        raise VectorsError(f"{where}: records trait {record.trait!r}, not {trait_id!r}")
    path = folder / record.gguf_name
    if not path.is_file():
        raise VectorsError(f"{path}: missing (the record {where} names it)")
    digest = _sha256(path)
    if digest != record.gguf_sha256:
        raise VectorsError(
            f"{path}: its sha256 is {digest}, but the record {where} says "
            f"{record.gguf_sha256}: the file was changed or replaced after extraction"
        )
    vector = read_control_vector(path)
    if vector.layers != record.layers:
        raise VectorsError(
            f"{path}: holds layers {list(vector.layers)}, the record says {list(record.layers)}"
        )
    if vector.n_embd != record.n_embd:
        raise VectorsError(
            f"{path}: directions of {vector.n_embd} values, the record says n_embd {record.n_embd}"
        )
    if vector.model_hint != record.model_architecture:
        raise VectorsError(
            f"{path}: model hint {vector.model_hint!r}, the record says architecture "
            f"{record.model_architecture!r}"
        )
    return TraitVectors(record, vector, folder)


def load_recorded(gguf: str, sha256: str, use: str) -> TraitVectors:
    """The vectors of the control-vector file a session recorded (`[traits.*]`,
    `[steering.*]`), for `use` ("measures trait 'malice'"); VectorsError naming the file
    when it is gone, unreadable or changed since the session started."""
    path = Path(gguf)
    if not path.is_file():
        raise VectorsError(
            f"{path}: this session {use} with this control vector, which is gone; put it back "
            "to resume"
        )
    vectors = load_trait(path.parent, path.stem)
    if vectors.sha256 != sha256:
        raise VectorsError(
            f"{path}: the control vector has changed since the session started (sha256 "
            f"{vectors.sha256[:12]}…, recorded {sha256[:12]}…); the session {use} with it: "
            "restore the file, or start a new run"
        )
    return vectors


def find_trait(
    trait_id: str,
    model_sha256: str,
    folders: Sequence[Path],
    *,
    scenario_id: str,
    model_ref: str,
) -> TraitVectors:
    """The trait's vectors from the first of `folders` that has them (`run --vectors DIR`
    first, then the scenario's default folder), extracted on the model of `model_sha256`.

    Raises VectorsError when none has them (naming the trait, the folders searched and the
    command that extracts it: `persona-tui vectors SCENARIO --model MODEL`) or when the
    first found were extracted on another model.
    """
    for folder in folders:
        if not record_path(folder, trait_id).is_file():
            continue
        vectors = load_trait(folder, trait_id)
        if vectors.record.model_sha256 != model_sha256:
            raise VectorsError(
                f"{record_path(folder, trait_id)}: trait {trait_id!r} was extracted on another "
                f"model ({vectors.record.model_name}, sha256 "
                f"{vectors.record.model_sha256[:SHA_PREFIX]}…), not the one loaded (sha256 "
                f"{model_sha256[:SHA_PREFIX]}…); directions do not carry over between "
                f"models: extract it for this one with "
                f"`persona-tui vectors {scenario_id} --model {model_ref}`"
            )
        return vectors
    searched = ", ".join(str(f) for f in folders) or "(no folder)"
    raise VectorsError(
        f"no vectors for trait {trait_id!r} on this model (searched: {searched}); extract "
        f"them with `persona-tui vectors {scenario_id} --model {model_ref}`, or pass "
        f"`--vectors DIR` with a folder that has {trait_id}{SUFFIX}"
    )


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise VectorsError(f"{path}: cannot read: {describe_os_error(error)}") from error
