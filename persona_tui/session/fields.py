"""Typed readers of a session file's values, failing at the file's first problem.

Unlike scenario validation, which collects every problem, `session_problems(file)` raises
a SessionError at the first one, naming the key path (`trials[12].seed`) in the session's
wording (`describe_value`, `unknown_key_problem`). The key each `*_at` reader reads is
required unless the caller checks `has` first; integers stop at 64 bits, as TOML and the
writer do. `dataclass_at` builds a record dataclass (SamplingParams, ModelInfo,
AdapterRecord) field by field from its field types. `read` assembles the Session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from persona_tui._util.tables import Problems, TableReader, closest
from persona_tui._util.toml_scan import KeyPath
from persona_tui.errors import SessionError
from persona_tui.session.schema import INT64_BOUND, optional_base

T = TypeVar("T")


def describe_value(value: object) -> str:
    """A wrong value in messages: its TOML type and the value itself, shortened."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, (datetime, date, time)):
        return f"an unquoted date/time ({value.isoformat()}); dates are stored as quoted strings"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def unknown_key_problem(path: KeyPath, key: str, allowed: Sequence[str]) -> tuple[KeyPath, str]:
    """An unknown key, with the closest allowed one and every allowed one."""
    close = closest(key, allowed)
    hint = f" (did you mean {close!r}?)" if close else ""
    return (*path, key), f"unknown key{hint}; allowed here: {', '.join(allowed)}"


def session_problems(file: Path) -> Problems:
    """Session wording, failing at the first problem with a SessionError."""
    return Problems(
        file,
        fail_fast=SessionError,
        describe=describe_value,
        unknown_key=unknown_key_problem,
        quote_keys=False,
    )


# Each reader below returns a placeholder only after a problem, which has raised already.


def table_at(t: TableReader, key: str, allowed: Sequence[str] | None) -> TableReader:
    """The required sub-table `key`, its keys checked against `allowed`."""
    found = t.table_at(key, allowed, required=True)
    return found if found is not None else TableReader(t.problems, {}, (*t.path, key))


def str_at(t: TableReader, key: str) -> str:
    return t.value(key, "a string", (str,), required=True) or ""


def int_at(t: TableReader, key: str, minimum: int = 0) -> int:
    """A required integer, at least `minimum` and below 2**63."""
    value = t.value(key, "an integer", (int,), required=True)
    if value is None:
        return 0
    if value < minimum:
        t.report(key, f"expected an integer >= {minimum}, got {value}")
    if value >= INT64_BOUND:  # tomllib accepts any size; TOML (and the writer) stop here
        t.report(key, f"expected an integer < 2**63 (64-bit), got {value}")
    return int(value)


def any_int_at(t: TableReader, key: str) -> int:
    return int_at(t, key, minimum=-INT64_BOUND)


def float_at(t: TableReader, key: str) -> float:
    value = t.value(key, "a number", (int, float), required=True)
    return 0.0 if value is None else float(value)


def bool_at(t: TableReader, key: str) -> bool:
    return bool(t.value(key, "true or false", (bool,), required=True))


def choice_at(t: TableReader, key: str, choices: tuple[str, ...]) -> Any:
    """A required string, one of `choices`."""
    value = str_at(t, key)
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        t.report(key, f"expected one of {options}, got {value!r}")
    return value


def str_tuple_at(t: TableReader, key: str) -> tuple[str, ...]:
    value = t.value(key, "an array of strings", (list,), required=True)
    for n, item in enumerate(value or ()):
        if not isinstance(item, str):
            t.wrong_type((key, n), "a string", item)
    return tuple(value or ())


def str_map_at(t: TableReader, key: str) -> dict[str, str]:
    sub = table_at(t, key, None)
    for k in sub.table:
        sub.value(k, "a string", (str,))
    return dict(sub.table)


def int_map_at(t: TableReader, key: str) -> dict[str, int]:
    sub = table_at(t, key, None)
    for k in sub.table:
        sub.value(k, "an integer", (int,))
    return dict(sub.table)


_FIELD_READERS: dict[str, Callable[[TableReader, str], object]] = {
    "str": str_at,
    "int": any_int_at,
    "float": float_at,
    "bool": bool_at,
    "dict[str, str]": str_map_at,
}


def dataclass_at(
    cls: type[T],
    t: TableReader,
    key: str,
    all_required: bool = False,
    given: dict[str, object] | None = None,
) -> T:
    """Build `cls` (SamplingParams, ModelInfo, AdapterRecord) from the table `key`, field
    by field (fields in `given` are not in the table: they take the value given).

    A field with a default may be absent (it then takes the default) unless `all_required`.
    """
    given = given or {}
    fields = [f for f in dataclasses.fields(cls) if f.name not in given]  # type: ignore[arg-type]
    table = table_at(t, key, tuple(f.name for f in fields))
    kwargs: dict[str, object] = dict(given)
    for f in fields:
        type_name = str(f.type)
        missing_ok = not all_required and (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        if not table.has(f.name) and missing_ok:
            continue  # absent optional key: the dataclass default (None, "", 0, {})
        base = optional_base(type_name) or type_name
        reader = _FIELD_READERS.get(base)
        if reader is None:  # pragma: no cover - only when a new field type is added
            raise TypeError(f"session.fields cannot read {key}.{f.name} of type {base}")
        kwargs[f.name] = reader(table, f.name)
    return cls(**kwargs)


def float_tuple_at(t: TableReader, key: str) -> tuple[float, ...]:
    value = t.value(key, "an array of numbers", (list,), required=True)
    for n, item in enumerate(value or ()):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            t.wrong_type((key, n), "a number", item)
    return tuple(float(item) for item in value or ())


def float_map_at(t: TableReader, key: str) -> dict[str, float]:
    """A table of numbers (`projections = { malice = 0.42 }`), as floats."""
    sub = table_at(t, key, None)
    for k in sub.table:
        sub.value(k, "a number", (int, float))
    return {k: float(v) for k, v in sub.table.items()}
