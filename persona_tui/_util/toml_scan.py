"""Key paths of a TOML document and the line where each is written, found by scanning its text.

`tomllib` reports lines only for syntax errors, so a problem found later (a wrong type, an
unknown key) would name only the file. `SourceLines` scans the source text of a valid
document once and maps every key path (`conditions[2].shots[0].assistant`) to its line;
`format_key_path` writes a path in that notation. `_util.tables` uses both to tie each
problem to `FILE:LINE`. Imports only the standard library.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

KeyPath = tuple[str | int, ...]
"""A key path: table keys and array indexes from the document's root."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_key_path(path: KeyPath, *, quote: bool = True) -> str:
    """`("conditions", 2, "shots", 0, "user")` → `conditions[2].shots[0].user`.

    A key that is not a bare TOML key is shown quoted (`"my key"`) unless `quote` is false.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part if not quote or _BARE_KEY.fullmatch(part) else f'"{part}"'
            out += f".{shown}" if out else shown
    return out


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
