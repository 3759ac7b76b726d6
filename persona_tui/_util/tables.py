"""The one reader of parsed TOML tables: typed values, key paths, unknown keys, every problem.

Every TOML file persona-tui reads (scenarios, rules, rubrics, sessions, judge sidecars, the
config, themes) is validated here, each with its own wording where its messages differ:

- `TableReader` reads typed values out of one table (`string`, `integer`, `number`, `choice`,
  `value` for any type, `table_at`/`tables_at`/`each_table` for sub-tables), reporting wrong
  types, bad ranges and unknown keys (with a "did you mean", `difflib`). Readers never
  raise by themselves: on a problem they report it and return the default.
- `Problems` turns each report into one line `FILE[:LINE]: key.path: problem` and either
  collects them all (`raise_if_any(ScenarioError)` at the end) or, with `fail_fast=`, raises
  the caller's error type at the first one. Its `describe` and `unknown_key` set the wording
  of "expected X, got Y" and of unknown keys for the whole document. The line of each key
  path comes from `_util.toml_scan.SourceLines`, which scans the source text.

Nothing here knows a schema. Imports only the standard library, `_util.toml_scan` and
`persona_tui.errors`.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from persona_tui._util.toml_scan import KeyPath, SourceLines, format_key_path
from persona_tui.errors import PersonaError, ScenarioError

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")


def toml_type_name(value: object) -> str:
    """The TOML name of a parsed value's type, for "expected X, got Y" messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime.datetime):
        return "datetime"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, datetime.time):
        return "time"
    return type(value).__name__


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to `word` (difflib, cutoff 0.6), or None when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str], *, capital: bool = False) -> str:
    """`" did you mean 'title'?"` for the closest choice, or "" when none is close."""
    close = closest(word, choices)
    if close is None:
        return ""
    return f" {'Did' if capital else 'did'} you mean {close!r}?"


UnknownKey = Callable[[KeyPath, str, Sequence[str]], tuple[KeyPath, str]]
"""(table path, unknown key, allowed keys) → (the path to report at, the message)."""


def unknown_key_problem(path: KeyPath, key: str, allowed: Sequence[str]) -> tuple[KeyPath, str]:
    """The default: `table.key: unknown key; did you mean 'x'?` (or the allowed keys)."""
    hint = did_you_mean(key, allowed) or f" expected one of: {', '.join(allowed)}."
    return (*path, key), f"unknown key;{hint}"


def raise_problems(error_type: type[PersonaError], problems: Sequence[str]) -> NoReturn:
    """Raise `error_type` with the problem lines (a list for ScenarioError, else one message)."""
    if issubclass(error_type, ScenarioError):
        raise error_type(list(problems))
    raise error_type("\n".join(problems))


class Problems:
    """Every problem found in one document, each tied to a key path (and so to a line).

    `lines` maps key paths to lines (`FILE:LINE: ...`); without it messages name only the
    file. With `fail_fast`, the first problem raises that error type at once. `describe`
    names a wrong value in "expected X, got Y" (None: no ", got Y"); `unknown_key` words
    unknown keys; `quote_keys=False` shows keys in paths as written, never quoted.
    """

    def __init__(
        self,
        source_path: str | Path,
        lines: SourceLines | None = None,
        *,
        fail_fast: type[PersonaError] | None = None,
        describe: Callable[[object], str] | None = toml_type_name,
        unknown_key: UnknownKey = unknown_key_problem,
        quote_keys: bool = True,
    ) -> None:
        self.source_path = str(source_path)
        self._lines = lines
        self.fail_fast = fail_fast
        self.describe = describe
        self.unknown_key = unknown_key
        self.quote_keys = quote_keys
        self._found: list[tuple[int | None, str]] = []

    def add(self, path: KeyPath, message: str) -> None:
        line = self._lines.line_of(path) if self._lines is not None else None
        where = f"{self.source_path}:{line}" if line is not None else self.source_path
        shown = format_key_path(path, quote=self.quote_keys)
        text = f"{where}: {shown}: {message}" if shown else f"{where}: {message}"
        if self.fail_fast is not None:
            raise_problems(self.fail_fast, [text])
        self._found.append((line, text))

    def add_elsewhere(self, text: str) -> None:
        """A problem located in another file this document names (`data.jsonl:12: ...`),
        reported as written, after the document's own problems."""
        if self.fail_fast is not None:
            raise_problems(self.fail_fast, [text])
        self._found.append((None, text))

    def wrong_type(self, path: KeyPath, expected: str, value: object) -> None:
        """Report `expected X, got Y` (or just `expected X`) at `path`."""
        got = f", got {self.describe(value)}" if self.describe is not None else ""
        self.add(path, f"expected {expected}{got}")

    def __bool__(self) -> bool:
        return bool(self._found)

    def lines(self) -> list[str]:
        """The problems in document order (those without a line last)."""
        ordered = sorted(self._found, key=lambda found: math.inf if found[0] is None else found[0])
        return [message for _, message in ordered]

    def raise_if_any(self, error_type: type[PersonaError]) -> None:
        """Raise `error_type` with every problem, in document order, when there is one."""
        if self._found:
            raise_problems(error_type, self.lines())


class TableReader:
    """Reads typed values from one TOML table; every problem goes to `problems` under `path`.

    Readers never raise by themselves (unless `problems` fails fast): on a problem they
    report it and return the default, so validation goes on and reports everything at once.
    `allowed` lists the keys the table may hold; None skips the unknown-key check (for
    `unknown_keys` or `check_keys` later).
    """

    def __init__(
        self,
        problems: Problems,
        table: Mapping[str, Any],
        path: KeyPath = (),
        allowed: Sequence[str] | None = None,
    ) -> None:
        self.problems = problems
        self.table = table
        self.path = path
        if allowed is not None:
            self.check_keys(allowed)

    def unknown_keys(self, allowed: Sequence[str]) -> list[str]:
        """The keys of the table that are not in `allowed`, in table order."""
        return [key for key in self.table if key not in allowed]

    def check_keys(self, allowed: Sequence[str]) -> None:
        """Report every key not in `allowed`, worded by `problems.unknown_key`."""
        for key in self.table:
            if key not in allowed:
                self.problems.add(*self.problems.unknown_key(self.path, key, allowed))

    def has(self, key: str) -> bool:
        return key in self.table

    def report(self, key: str | int | KeyPath, message: str) -> None:
        suffix = key if isinstance(key, tuple) else (key,)
        self.problems.add((*self.path, *suffix), message)

    def wrong_type(self, key: str | int | KeyPath, expected: str, value: object) -> None:
        """Report `expected X, got Y` at `key` (a key, an index or a path below this table)."""
        suffix = key if isinstance(key, tuple) else (key,)
        self.problems.wrong_type((*self.path, *suffix), expected, value)

    def value(
        self, key: str, expected: str, kinds: tuple[type, ...], *, required: bool = False
    ) -> Any:
        """The value at `key` when it is one of `kinds` (a boolean only if `bool` is listed).

        None when it is absent (reported when `required`) or of another type (reported as
        `expected {expected}, got ...`).
        """
        value = self.table.get(key)
        if type(value) in kinds:  # the common case first (sessions hold thousands of tables)
            return value
        if value is None:
            if required and key not in self.table:
                self.report(key, "required key is missing")
            return None
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.wrong_type(key, expected, value)
            return None
        return value

    def string(self, key: str, *, required: bool = False, nonempty: bool = False) -> str:
        value = self.value(key, "a string", (str,))
        if value is None:
            if required and key not in self.table:
                self.report(key, "required key is missing")
            return ""
        if nonempty and not value.strip():
            self.report(key, "must not be empty")
        return str(value)

    def slug(self, key: str) -> str:
        """A required id: lowercase letters, digits, '-' and '_'; starts with a letter or digit."""
        value = self.string(key, required=True)
        if key in self.table and isinstance(self.table[key], str) and not _SLUG.fullmatch(value):
            self.report(
                key,
                f"{value!r} is not a valid id: use lowercase letters, digits, '-' and '_',"
                " starting with a letter or digit",
            )
        return value

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.value(key, "a string", (str,))
        if value is None:
            return default
        if value not in choices:
            options = ", ".join(repr(choice) for choice in choices)
            self.report(
                key, f"must be one of {options}, got {value!r};{did_you_mean(value, choices)}"
            )
            return default
        return str(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.value(key, "a boolean (true or false)", (bool,))
        return default if value is None else bool(value)

    def integer(
        self, key: str, default: int, *, minimum: int | None = None, required: bool = False
    ) -> int:
        value = self.value(key, "an integer", (int,))
        if value is None:
            if required and key not in self.table:
                self.report(key, "required key is missing")
            return default
        if minimum is not None and value < minimum:
            self.report(key, f"must be >= {minimum}, got {value}")
        return int(value)

    def number(
        self,
        key: str,
        default: float,
        *,
        above: float | None = None,
        at_least: float | None = None,
        at_most: float | None = None,
    ) -> float:
        """A float (an integer is accepted) within the given bounds."""
        value = self.value(key, "a number", (int, float))
        if value is None:
            return default
        number = float(value)
        if not math.isfinite(number):
            self.report(key, f"must be a finite number, got {value}")
            return default
        bounds = []
        if above is not None:
            bounds.append(f"> {above:g}")
        if at_least is not None:
            bounds.append(f">= {at_least:g}")
        if at_most is not None:
            bounds.append(f"<= {at_most:g}")
        if (
            (above is not None and not number > above)
            or (at_least is not None and number < at_least)
            or (at_most is not None and number > at_most)
        ):
            self.report(key, f"must be {' and '.join(bounds)}, got {value}")
        return number

    def string_list(self, key: str) -> list[str]:
        """An array of non-empty strings."""
        value = self.value(key, "an array of strings", (list,))
        if value is None:
            return []
        items: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.wrong_type((key, index), "a string", item)
            elif not item.strip():
                self.report((key, index), "must not be empty")
            else:
                items.append(item)
        return items

    def table_at(
        self,
        key: str,
        allowed: Sequence[str] | None,
        *,
        expected: str = "a table",
        required: bool = False,
    ) -> TableReader | None:
        """The sub-table `key` (None when absent or not a table)."""
        value = self.value(key, expected, (dict,), required=required)
        if value is None:
            return None
        return TableReader(self.problems, value, (*self.path, key), allowed)

    def each_table(
        self,
        key: str,
        allowed: Sequence[str] | None,
        *,
        what: str = "",
        expected: str | None = None,
    ) -> Iterator[TableReader]:
        """The array of tables `key` (`[[key]]`), one reader at a time, checked as it goes.

        `what` names one item in messages (`expected a table (a rule), got ...`); `expected`
        replaces the wording for the array itself (default `an array of tables ([[key]])`).
        """
        value = self.value(key, expected or f"an array of tables ([[{key}]])", (list,))
        if value is None:
            return
        item_expected = f"a table ({what})" if what else "a table"
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield TableReader(self.problems, item, (*self.path, key, index), allowed)
            else:
                self.wrong_type((key, index), item_expected, item)

    def tables_at(self, key: str, allowed: Sequence[str] | None, *, what: str) -> list[TableReader]:
        """The array of tables `key` (`[[key]]`); `what` names one item in messages."""
        return list(self.each_table(key, allowed, what=what))


def report_duplicates(readers: Sequence[TableReader], key: str, what: str) -> None:
    """Report every item whose `key` repeats an earlier item's value."""
    first: dict[object, TableReader] = {}
    for reader in readers:
        value = reader.table.get(key)
        if not isinstance(value, str):
            continue
        if value in first:
            earlier = format_key_path(first[value].path)
            reader.report(key, f"duplicate {what} {value!r} (already used by {earlier})")
        else:
            first[value] = reader
