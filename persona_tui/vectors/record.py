"""The record beside a trait's control-vector GGUF: `<trait>.toml`, written and read.

It says what the directions are and how they were made, so a run can check them and a
reader can reproduce them: the trait and scenario, the model (name, sha256, architecture,
layers, n_embd), per layer the separation of held-out positive from negative examples (e.g.
an AUC) and the direction's norm, the recommended layer, the token counts, the seed and
sampling, the texts used (each side's system text and exchanges, the questions), the file
of generated responses (`<trait>.responses.jsonl`), the GGUF's sha256, when and by which
persona-tui version. Written atomically (tomli-w, `_util.atomic`); read strictly, failing
at the first problem with a `VectorsError` naming the file, line and key.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from persona_tui._util.atomic import atomic_write_text, describe_os_error
from persona_tui._util.tables import Problems, TableReader
from persona_tui._util.textdata import loads_toml
from persona_tui._util.toml_scan import SourceLines
from persona_tui.errors import VectorsError
from persona_tui.scenario.model import Shot, TraitFraming
from persona_tui.values import SamplingParams

FORMAT: Final = 1
RECORD_SUFFIX: Final = ".toml"
RESPONSES_SUFFIX: Final = ".responses.jsonl"

_TOP_KEYS = (
    "format",
    "trait",
    "label",
    "scenario",
    "created",
    "persona_tui_version",
    "method",
    "seed",
    "samples",
    "layers",
    "recommended_layer",
    "gguf",
    "gguf_sha256",
    "responses",
    "model",
    "tokens",
    "sampling",
    "texts",
    "per_layer",
)
_MODEL_KEYS = ("name", "sha256", "architecture", "n_layers", "n_embd")
_TOKEN_KEYS = ("positive", "negative")
_SAMPLING_KEYS = tuple(f.name for f in SamplingParams.__dataclass_fields__.values())
_TEXT_KEYS = ("positive", "negative", "questions")
_FRAMING_KEYS = ("system", "shots")
_SHOT_KEYS = ("user", "assistant")
_LAYER_KEYS = ("layer", "separation", "norm", "gap")


@dataclass(frozen=True)
class LayerStats:
    """One layer's direction: how well it separates held-out positive from negative
    examples (`separation`: the held-out AUC in [0, 1]; `gap`: the held-out standardized
    mean difference) and its norm (of the raw difference of means)."""

    layer: int
    separation: float
    norm: float
    gap: float = 0.0


@dataclass(frozen=True)
class VectorRecord:
    """What `<trait>.toml` holds (see the module docstring). `gguf` and `responses` are
    file names relative to the record's folder."""

    trait: str
    label: str
    scenario: str
    model_name: str
    model_sha256: str
    model_architecture: str
    n_layers: int
    n_embd: int
    recommended_layer: int
    per_layer: tuple[LayerStats, ...]
    positive_tokens: int
    negative_tokens: int
    seed: int
    samples: int
    sampling: SamplingParams
    positive: TraitFraming
    negative: TraitFraming
    questions: tuple[str, ...]
    gguf_sha256: str
    created: str  # ISO 8601, UTC
    persona_tui_version: str
    method: str = "generate"  # how the responses were made: "generate" or "teacher-force"
    gguf: str = field(default="")  # "" : `<trait>.gguf`
    responses: str = field(default="")  # "" : `<trait>.responses.jsonl`

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(s.layer for s in self.per_layer)

    @property
    def gguf_name(self) -> str:
        return self.gguf or f"{self.trait}.gguf"

    @property
    def responses_name(self) -> str:
        return self.responses or f"{self.trait}{RESPONSES_SUFFIX}"

    def stats(self, layer: int) -> LayerStats:
        return next(s for s in self.per_layer if s.layer == layer)


def record_path(folder: Path, trait: str) -> Path:
    return folder / f"{trait}{RECORD_SUFFIX}"


def write_record(path: Path, record: VectorRecord) -> None:
    """Write `record` to `path` (TOML), atomically."""
    import tomli_w

    if record.recommended_layer not in record.layers:
        raise VectorsError(
            f"{path}: the recommended layer {record.recommended_layer} is not one of the "
            f"layers {list(record.layers)}"
        )
    data: dict[str, Any] = {
        "format": FORMAT,
        "trait": record.trait,
        "label": record.label,
        "scenario": record.scenario,
        "created": record.created,
        "persona_tui_version": record.persona_tui_version,
        "method": record.method,
        "seed": record.seed,
        "samples": record.samples,
        "layers": list(record.layers),
        "recommended_layer": record.recommended_layer,
        "gguf": record.gguf_name,
        "gguf_sha256": record.gguf_sha256,
        "responses": record.responses_name,
        "model": {
            "name": record.model_name,
            "sha256": record.model_sha256,
            "architecture": record.model_architecture,
            "n_layers": record.n_layers,
            "n_embd": record.n_embd,
        },
        "tokens": {"positive": record.positive_tokens, "negative": record.negative_tokens},
        "sampling": asdict(record.sampling),
        "texts": {
            "positive": _framing_data(record.positive),
            "negative": _framing_data(record.negative),
            "questions": list(record.questions),
        },
        "per_layer": [asdict(s) for s in record.per_layer],
    }
    try:
        atomic_write_text(path, tomli_w.dumps(data, multiline_strings=True), mode=0o644)
    except OSError as error:
        raise VectorsError(f"{path}: cannot write: {describe_os_error(error)}") from error


def _framing_data(framing: TraitFraming) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if framing.system is not None:
        data["system"] = framing.system
    data["shots"] = [{"user": s.user, "assistant": s.assistant} for s in framing.shots]
    return data


def read_record(path: Path) -> VectorRecord:
    """Read and check `<trait>.toml`; VectorsError names the file, line and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VectorsError(f"{path}: no such vector record") from None
    except UnicodeDecodeError:
        raise VectorsError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise VectorsError(f"{path}: cannot read: {describe_os_error(error)}") from error
    data = loads_toml(text, path, VectorsError)
    problems = Problems(path, SourceLines(text), fail_fast=VectorsError)
    top = TableReader(problems, data, (), _TOP_KEYS)
    version = _int(top, "format", 1)
    if version != FORMAT:
        top.report("format", f"format {version} is not known (this persona-tui reads {FORMAT})")
    model = _table(top, "model", _MODEL_KEYS)
    tokens = _table(top, "tokens", _TOKEN_KEYS)
    texts = _table(top, "texts", _TEXT_KEYS)
    n_layers = _int(model, "n_layers", 1)
    per_layer = tuple(_layer(r, n_layers) for r in _tables(top, "per_layer", _LAYER_KEYS))
    layers = [s.layer for s in per_layer]
    if top.value("layers", "an array of integers", (list,), required=True) != layers:
        top.report("layers", f"must list the layers of [[per_layer]] in order: {layers}")
    if len(set(layers)) != len(layers) or layers != sorted(layers):
        top.report("per_layer", "each layer once, in increasing order")
    recommended = _int(top, "recommended_layer", 1)
    if recommended not in layers:
        top.report("recommended_layer", f"{recommended} is not one of the layers {layers}")
    questions = tuple(texts.string_list("questions"))
    if not questions:
        texts.report("questions", "must hold at least one question")
    return VectorRecord(
        trait=top.slug("trait"),
        label=_str(top, "label"),
        scenario=top.slug("scenario"),
        model_name=_str(model, "name"),
        model_sha256=_sha256(model, "sha256"),
        model_architecture=_str(model, "architecture"),
        n_layers=n_layers,
        n_embd=_int(model, "n_embd", 1),
        recommended_layer=recommended,
        per_layer=per_layer,
        positive_tokens=_int(tokens, "positive", 0),
        negative_tokens=_int(tokens, "negative", 0),
        seed=_int(top, "seed", 0),
        samples=_int(top, "samples", 1),
        sampling=_sampling(_table(top, "sampling", _SAMPLING_KEYS)),
        positive=_framing(_table(texts, "positive", _FRAMING_KEYS)),
        negative=_framing(_table(texts, "negative", _FRAMING_KEYS)),
        questions=questions,
        gguf_sha256=_sha256(top, "gguf_sha256"),
        created=_str(top, "created"),
        persona_tui_version=_str(top, "persona_tui_version"),
        method=_str(top, "method"),
        gguf=_file_name(top, "gguf"),
        responses=_file_name(top, "responses"),
    )


# Each reader below fails fast (VectorsError) on a problem, so its fallback is never used.


def _table(t: TableReader, key: str, allowed: tuple[str, ...]) -> TableReader:
    found = t.table_at(key, allowed, required=True)
    return found if found is not None else TableReader(t.problems, {}, (*t.path, key))


def _tables(t: TableReader, key: str, allowed: tuple[str, ...]) -> list[TableReader]:
    if not t.has(key):
        t.report(key, "required key is missing")
    readers = t.tables_at(key, allowed, what="a layer")
    if not readers:
        t.report(key, "must hold at least one layer")
    return readers


def _str(t: TableReader, key: str) -> str:
    return t.string(key, required=True, nonempty=True)


def _int(t: TableReader, key: str, minimum: int) -> int:
    return t.integer(key, minimum, minimum=minimum, required=True)


def _sha256(t: TableReader, key: str) -> str:
    value = _str(t, key)
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        t.report(key, "must be a sha256: 64 lowercase hexadecimal digits")
    return value


def _file_name(t: TableReader, key: str) -> str:
    value = _str(t, key)
    if "/" in value or "\\" in value or value in (".", ".."):
        t.report(key, "must be a file name in the record's folder, not a path")
    return value


def _layer(t: TableReader, n_layers: int) -> LayerStats:
    layer = _int(t, "layer", 1)
    if layer > n_layers:
        t.report("layer", f"must be <= the model's n_layers ({n_layers}), got {layer}")
    separation = _float(t, "separation")
    norm = _float(t, "norm")
    if norm < 0:
        t.report("norm", f"must be >= 0, got {norm}")
    gap = _float(t, "gap") if t.has("gap") else 0.0
    return LayerStats(layer, separation, norm, gap)


def _float(t: TableReader, key: str) -> float:
    value = t.value(key, "a number", (int, float), required=True)
    if value is None or not math.isfinite(float(value)):
        t.report(key, f"must be a finite number, got {value}")
    return float(value)


def _sampling(t: TableReader) -> SamplingParams:
    return SamplingParams(
        temperature=t.number("temperature", 0.0, at_least=0),
        top_p=t.number("top_p", 1.0, above=0, at_most=1),
        top_k=t.integer("top_k", 0, minimum=0),
        min_p=t.number("min_p", 0.0, at_least=0, at_most=1),
        repeat_penalty=t.number("repeat_penalty", 1.0, above=0),
        max_tokens=t.integer("max_tokens", 1, minimum=1),
    )


def _framing(t: TableReader) -> TraitFraming:
    system = t.string("system") if t.has("system") else None
    shots = tuple(
        Shot(_str(s, "user"), _str(s, "assistant"))
        for s in t.tables_at("shots", _SHOT_KEYS, what="an exchange")
    )
    return TraitFraming(system, shots)
