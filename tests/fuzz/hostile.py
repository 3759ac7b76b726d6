"""Hostile inputs for the file readers: random bytes, wrong shapes, mutated real files.

Every reader under fuzz must either load its input or raise a `PersonaError` whose message
names the file; any other exception (a traceback for the user) fails the test.
"""

from __future__ import annotations

import datetime
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import strategies as st

from persona_tui.errors import PersonaError

# Keys the readers know, so generated documents reach past the "unknown key" checks.
KEYS = [
    "id",
    "title",
    "description",
    "prompt_mode",
    "study",
    "sampling",
    "conditions",
    "probes",
    "annotation",
    "rules",
    "samples",
    "seed",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "max_tokens",
    "label",
    "system",
    "note",
    "shots",
    "user",
    "assistant",
    "text",
    "turns",
    "notes",
    "labels",
    "scales",
    "key",
    "bad",
    "min",
    "max",
    "keywords",
    "patterns",
    "case_sensitive",
    "format_version",
    "session",
    "model",
    "plan",
    "scenario",
    "trials",
    "condition",
    "probe",
    "sample",
    "prompt",
    "response",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "started",
    "seconds",
    "turn_responses",
    "annotations",
    "annotator",
    "time",
    "scores",
    "blind_seed",
    "default_model",
    "theme",
    "threads",
    "repack",
    "models",
    "path",
    "backend",
    "n_ctx",
    "base_url",
    "api_key_env",
    "name",
    "dark",
    "primary",
    "colors",
    "variables",
    "template",
    "rubrics",
    "batches",
    "rows",
    "columns",
    "sha256",
    "session_id",
    "instruction",
    "questions",
    "pos",
    "neg",
    "eval_prompt",
    "paraphrases",
    "type",
    "samples_per_paraphrase",
    "options",
    "question",
    "statement",
    "answer_matching_behavior",
    "answer_not_matching_behavior",
]

_leaves = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "x", "demo", "chat", "auto", "#ff0000", "{answer}", "stop", "1"]),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.just(datetime.UTC)),
    st.times(),
)
_keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=8))

toml_values = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_keys, children, max_size=4),
    ),
    max_leaves=12,
)
toml_tables = st.dictionaries(_keys, toml_values, max_size=6)


def dump_toml(data: dict[str, Any]) -> bytes:
    return tomli_w.dumps(data).encode("utf-8")


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def reshaped_toml(draw: st.DrawFn, seed_texts: list[str]) -> bytes:
    """A real document with one value (deep inside or not) replaced by another shape, or dropped."""
    data = tomllib.loads(draw(st.sampled_from(seed_texts)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = data
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(toml_values)
    return dump_toml(data)


def _deep(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "table":
        return "{a = " * depth + "1" + "}" * depth
    return "[" * depth + "{}" + "]" * depth


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], *, toml: bool = True) -> bytes:
    """A real file with byte flips, truncation, line deletions or injected hostile values."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(
            st.sampled_from(
                ["flip", "truncate", "delete_line", "dup_line", "deep", "big_int", "nul", "insert"]
            )
        )
        if not data:
            break
        if how == "flip":
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
        elif how == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif how in ("delete_line", "dup_line"):
            lines = bytes(data).split(b"\n")
            at = draw(st.integers(0, len(lines) - 1))
            if how == "delete_line":
                del lines[at]
            else:
                lines.insert(at, lines[at])
            data = bytearray(b"\n".join(lines))
        else:
            lines = bytes(data).split(b"\n")
            at = draw(st.integers(0, len(lines)))
            if how == "deep":
                depth = draw(st.sampled_from([20, 90, 150, 400, 2000, 6000]))
                nest = _deep(depth, draw(st.sampled_from(["array", "table", "mixed"])))
                value = nest if toml else nest.replace("{a = ", '{"a": ').replace("[{}", "[{")
            elif how == "big_int":
                value = "9" * draw(st.sampled_from([19, 30, 4301, 6000]))
            elif how == "nul":
                value = "\x00"
            else:
                value = draw(st.text(max_size=10))
            key = draw(st.sampled_from(KEYS))
            line = f"{key} = {value}" if toml and draw(st.booleans()) else value
            lines.insert(at, line.encode("utf-8", "surrogatepass"))
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def random_inputs() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=400),
        st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
        toml_tables.map(dump_toml),
    )


def json_inputs(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    def to_json(value: Any) -> bytes:
        return json.dumps(value, default=str).encode("utf-8")

    return st.one_of(
        random_inputs(),
        toml_values.map(to_json),
        toml_tables.map(to_json),
        mutated(seeds, toml=False),
    )


def check_one(path: Path, data: bytes, read: Callable[[Path], object]) -> None:
    """Write `data` to `path` and read it: loading or a PersonaError naming the file passes."""
    path.write_bytes(data)
    try:
        read(path)
    except PersonaError as error:
        message = str(error)
        assert str(path) in message, message
        assert "please report this" not in message, message  # the importers' own bug report
        assert "Traceback" not in message, message
