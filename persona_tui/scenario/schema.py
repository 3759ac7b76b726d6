"""Generic helpers for validating a parsed TOML document with `file:line: key.path: problem` lines.

`tomllib` reports line numbers only for syntax errors, so `SourceLines` scans the source text
itself and maps every key path (`conditions[2].shots[0].assistant`) to the line where it is
written. `Problems` collects every problem instead of stopping at the first, and `TableReader`
reads typed values out of one table, reporting wrong types, bad ranges and unknown keys (with a
"did you mean"). Nothing here knows the scenario schema; `persona_tui.scenario.parse` does.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import math
import re
import tomllib
from collections.abc import Iterable, Sequence
from typing import Any

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SYNTAX_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_SYNTAX_AT_END = re.compile(r"\s*\(at end of document\)\s*$")
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")


def format_key_path(path: KeyPath) -> str:
    """`("conditions", 2, "shots", 0, "user")` → `conditions[2].shots[0].user`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part if _BARE_KEY.fullmatch(part) else f'"{part}"'
            out += f".{shown}" if out else shown
    return out


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


def syntax_error_line(source_path: str, text: str, error: tomllib.TOMLDecodeError) -> str:
    """Turn tomllib's "msg (at line X, column Y)" into `file:X:Y: invalid TOML: msg`."""
    message = str(error)
    line_attr, column_attr, msg_attr = (
        getattr(error, name, None) for name in ("lineno", "colno", "msg")
    )
    if isinstance(line_attr, int) and isinstance(column_attr, int) and isinstance(msg_attr, str):
        # Python >= 3.14 exposes the position as attributes.
        return f"{source_path}:{line_attr}:{column_attr}: invalid TOML: {msg_attr}"
    found = _SYNTAX_POSITION.search(message)
    if found:
        line, column = int(found.group(1)), int(found.group(2))
        message = message[: found.start()]
    else:
        at_end = _SYNTAX_AT_END.search(message)
        if at_end:
            message = message[: at_end.start()]
        line = text.count("\n") + 1
        column = len(text) - (text.rfind("\n") + 1) + 1
    return f"{source_path}:{line}:{column}: invalid TOML: {message}"


class SourceLines:
    """Where each key path of a (valid) TOML document is written, by scanning its text.

    Best effort: a path that cannot be found falls back to its nearest enclosing table or
    array, and to no line at all when even that is unknown.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[KeyPath, int] = {}
        scanner = _Scanner(text, self._lines)
        # On anything unexpected, keep whatever was located before the scanner lost its way.
        with contextlib.suppress(IndexError, ValueError):
            scanner.run()

    def line_of(self, path: KeyPath) -> int | None:
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return None


class _Scanner:
    """A small TOML tokenizer that records the line of every key, table and array element."""

    def __init__(self, text: str, lines: dict[KeyPath, int]) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines = lines
        self.array_tables: dict[KeyPath, int] = {}  # [[x]] path → how many seen so far

    def run(self) -> None:
        table: KeyPath = ()
        while True:
            self._skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return
            start = self.pos
            if self.text.startswith("[[", self.pos):
                self.pos += 2
                table = self._array_table(self._key())
                self._expect("]]")
            elif self.text[self.pos] == "[":
                self.pos += 1
                table = self._resolve(self._key())
                self.lines.setdefault(table, self.line)
                self._expect("]")
            else:
                self._key_value(table)
            if self.pos == start:
                raise ValueError("scanner made no progress")

    def _resolve(self, keys: Sequence[str]) -> KeyPath:
        path: KeyPath = ()
        for key in keys:
            path += (key,)
            count = self.array_tables.get(path)
            if count:
                path += (count - 1,)
        return path

    def _array_table(self, keys: Sequence[str]) -> KeyPath:
        array = (*self._resolve(keys[:-1]), keys[-1])
        index = self.array_tables.get(array, 0)
        self.array_tables[array] = index + 1
        self.lines.setdefault(array, self.line)
        self.lines[(*array, index)] = self.line
        return (*array, index)

    def _key_value(self, table: KeyPath) -> None:
        line = self.line
        keys = self._key()
        path = table
        for key in keys:
            path += (key,)
            self.lines.setdefault(path, line)
        self._skip_blank(newlines=False)
        self._expect("=")
        self._skip_blank(newlines=False)
        self._value(path)

    def _key(self) -> list[str]:
        keys: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            char = self.text[self.pos]
            if char == '"':
                keys.append(self._basic_string())
            elif char == "'":
                end = self.text.index("'", self.pos + 1)
                keys.append(self.text[self.pos + 1 : end])
                self.pos = end + 1
            else:
                found = _BARE_KEY.match(self.text, self.pos)
                if not found:
                    raise ValueError("expected a key")
                keys.append(found.group())
                self.pos = found.end()
            self._skip_blank(newlines=False)
            if self.pos < len(self.text) and self.text[self.pos] == ".":
                self.pos += 1
                continue
            return keys

    def _value(self, path: KeyPath) -> None:
        text = self.text
        if text.startswith('"""', self.pos) or text.startswith("'''", self.pos):
            self._multiline_string(text[self.pos])
        elif text[self.pos] == '"':
            self._basic_string()
        elif text[self.pos] == "'":
            self.pos = text.index("'", self.pos + 1) + 1
        elif text[self.pos] == "[":
            self._array(path)
        elif text[self.pos] == "{":
            self._inline_table(path)
        else:
            while self.pos < len(text) and text[self.pos] not in ",]}\n#":
                self.pos += 1

    def _array(self, path: KeyPath) -> None:
        self.pos += 1
        index = 0
        while True:
            self._skip_blank(newlines=True)
            if self.text[self.pos] == "]":
                self.pos += 1
                return
            self.lines.setdefault((*path, index), self.line)
            self._value((*path, index))
            self._skip_blank(newlines=True)
            if self.text[self.pos] == ",":
                self.pos += 1
            index += 1

    def _inline_table(self, path: KeyPath) -> None:
        self.pos += 1
        while True:
            self._skip_blank(newlines=True)
            char = self.text[self.pos]
            if char == "}":
                self.pos += 1
                return
            if char == ",":
                self.pos += 1
                continue
            self._key_value(path)

    def _basic_string(self) -> str:
        """Consume a one-line "basic string" and return its (roughly unescaped) content."""
        self.pos += 1
        out: list[str] = []
        while self.text[self.pos] != '"':
            if self.text[self.pos] == "\\":
                self.pos += 1
            out.append(self.text[self.pos])
            self.pos += 1
        self.pos += 1
        return "".join(out)

    def _multiline_string(self, quote: str) -> None:
        delimiter = quote * 3
        self.pos += 3
        while not self.text.startswith(delimiter, self.pos):
            char = self.text[self.pos]
            if char == "\\" and quote == '"':
                self.pos += 1
                char = self.text[self.pos]
            if char == "\n":
                self.line += 1
            self.pos += 1
        self.pos += 3
        # Up to two more quotes right before the delimiter belong to the string.
        for _ in range(2):
            if self.pos < len(self.text) and self.text[self.pos] == quote:
                self.pos += 1

    def _skip_blank(self, *, newlines: bool) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "#":
                while self.pos < len(text) and text[self.pos] != "\n":
                    self.pos += 1
            elif char == "\n" and newlines:
                self.line += 1
                self.pos += 1
            elif char in " \t\r":
                self.pos += 1
            else:
                return

    def _expect(self, token: str) -> None:
        if not self.text.startswith(token, self.pos):
            raise ValueError(f"expected {token!r}")
        self.pos += len(token)


class Problems:
    """Every problem found in one document, each tied to a key path (and so to a line)."""

    def __init__(self, source_path: str, lines: SourceLines) -> None:
        self.source_path = source_path
        self._lines = lines
        self._found: list[tuple[int | None, str]] = []

    def add(self, path: KeyPath, message: str) -> None:
        line = self._lines.line_of(path)
        where = f"{self.source_path}:{line}" if line is not None else self.source_path
        shown = format_key_path(path)
        self._found.append(
            (line, f"{where}: {shown}: {message}" if shown else f"{where}: {message}")
        )

    def __bool__(self) -> bool:
        return bool(self._found)

    def lines(self) -> list[str]:
        """The problems in document order (those without a line last)."""
        ordered = sorted(self._found, key=lambda found: math.inf if found[0] is None else found[0])
        return [message for _, message in ordered]


def did_you_mean(word: str, choices: Iterable[str], *, capital: bool = False) -> str:
    """`" did you mean 'title'?"` for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        return ""
    return f" {'Did' if capital else 'did'} you mean {close[0]!r}?"


class TableReader:
    """Reads typed values from one TOML table; every problem goes to `problems` under `path`.

    Readers never raise: on a problem they record it and return the default, so validation
    goes on and reports everything at once.
    """

    def __init__(
        self, problems: Problems, table: dict[str, Any], path: KeyPath, allowed: Sequence[str]
    ) -> None:
        self.problems = problems
        self.table = table
        self.path = path
        for key in table:
            if key not in allowed:
                hint = did_you_mean(key, allowed) or f" expected one of: {', '.join(allowed)}."
                problems.add((*path, key), f"unknown key;{hint}")

    def has(self, key: str) -> bool:
        return key in self.table

    def report(self, key: str | int | KeyPath, message: str) -> None:
        suffix = key if isinstance(key, tuple) else (key,)
        self.problems.add((*self.path, *suffix), message)

    def _get(self, key: str, expected: str, kinds: tuple[type, ...]) -> Any:
        value = self.table.get(key)
        if value is None:
            return None
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.report(key, f"expected {expected}, got {toml_type_name(value)}")
            return None
        return value

    def string(self, key: str, *, required: bool = False, nonempty: bool = False) -> str:
        value = self._get(key, "a string", (str,))
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
        value = self._get(key, "a string", (str,))
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
        value = self._get(key, "a boolean (true or false)", (bool,))
        return default if value is None else bool(value)

    def integer(
        self, key: str, default: int, *, minimum: int | None = None, required: bool = False
    ) -> int:
        value = self._get(key, "an integer", (int,))
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
        value = self._get(key, "a number", (int, float))
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
        value = self._get(key, "an array of strings", (list,))
        if value is None:
            return []
        items: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.report((key, index), f"expected a string, got {toml_type_name(item)}")
            elif not item.strip():
                self.report((key, index), "must not be empty")
            else:
                items.append(item)
        return items

    def table_at(self, key: str, allowed: Sequence[str]) -> TableReader | None:
        """The sub-table `key` (None when absent or not a table)."""
        value = self._get(key, "a table", (dict,))
        if value is None:
            return None
        return TableReader(self.problems, value, (*self.path, key), allowed)

    def tables_at(self, key: str, allowed: Sequence[str], *, what: str) -> list[TableReader]:
        """The array of tables `key` (`[[key]]`); `what` names one item in messages."""
        value = self._get(key, f"an array of tables ([[{key}]])", (list,))
        if value is None:
            return []
        readers: list[TableReader] = []
        for index, item in enumerate(value):
            if isinstance(item, dict):
                readers.append(TableReader(self.problems, item, (*self.path, key, index), allowed))
            else:
                self.report((key, index), f"expected a table ({what}), got {toml_type_name(item)}")
        return readers


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
