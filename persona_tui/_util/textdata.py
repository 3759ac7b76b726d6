"""Parse TOML, JSON and YAML text without letting hostile input escape as a traceback.

`tomllib`, `json` and `yaml` recurse once per nesting level, so a file holding a
5,000-deep array raises `RecursionError`; an integer of more than 4,300 digits raises a
bare `ValueError`; YAML dates like `2001-13-01` raise `ValueError` from `datetime`. Every
such failure becomes a `DataFileError` (or the caller's own `PersonaError` type) whose
message is one line: `FILE:LINE:COLUMN: invalid TOML: problem`, with the position when it is
known.

Self-contained on purpose: it imports only the standard library, `yaml` lazily, and
`persona_tui.errors`.
"""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any, NoReturn

from persona_tui.errors import PersonaError, ScenarioError

MAX_DEPTH = 100
"""The nesting depth named in messages: every parser here handles more (tomllib ~330)."""

_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_LONG_NUMBER = re.compile(r"\d{4301,}")
_AT_END = re.compile(r"\s*\(at end of document\)\s*$")


class DataFileError(PersonaError):
    """A TOML/JSON/YAML file could not be parsed.

    `where` is `FILE`, `FILE:LINE` or `FILE:LINE:COLUMN`; `problem` is the parser's
    message without the position; `at_end` is true when the parser ran off the end.
    """

    def __init__(
        self,
        file: str | Path,
        kind: str,
        problem: str,
        line: int | None = None,
        column: int | None = None,
        *,
        at_end: bool = False,
    ) -> None:
        self.file = str(file)
        self.kind = kind
        self.problem = problem
        self.line = line
        self.column = column
        self.at_end = at_end
        where = self.file
        if line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        self.where = where
        super().__init__(f"{where}: invalid {kind}: {problem}")


def _raise(error: DataFileError, error_type: type[PersonaError] | None) -> NoReturn:
    """Raise `error` itself, or the caller's type with the same one-line message."""
    if error_type is None:
        raise error
    if issubclass(error_type, ScenarioError):
        raise error_type([str(error)]) from None
    raise error_type(str(error)) from None


def _end_position(text: str) -> tuple[int, int]:
    return text.count("\n") + 1, len(text) - (text.rfind("\n") + 1) + 1


def deep_line(text: str, limit: int = MAX_DEPTH, *, comments: bool = True) -> int | None:
    """The line where `[`/`{` nesting first exceeds `limit`, skipping strings and comments.

    Best effort (it does not know every string syntax), and only run after a parser failed.
    """
    depth = 0
    line = 1
    quote = ""
    in_comment = False
    escaped = False
    for char in text:
        if char == "\n":
            line += 1
            in_comment = False
            continue
        if in_comment:
            continue
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "\"'":
            quote = char
        elif char == "#" and comments:
            in_comment = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return line
        elif char in "]}":
            depth = max(0, depth - 1)
    return None


def _too_deep(file: str | Path, kind: str, text: str, *, comments: bool = True) -> DataFileError:
    line = deep_line(text, comments=comments)
    if line is None:
        return DataFileError(file, kind, "nested too deeply to read")
    return DataFileError(file, kind, f"nested more than {MAX_DEPTH} levels deep", line)


def _value_error(file: str | Path, kind: str, text: str, error: Exception) -> DataFileError:
    """A parser's stray ValueError; a too-long integer gets its line."""
    long_number = _LONG_NUMBER.search(text) if "digits" in str(error) else None
    if long_number is None:
        return DataFileError(file, kind, str(error) or type(error).__name__)
    line = text.count("\n", 0, long_number.start()) + 1
    return DataFileError(file, kind, "a number with more than 4300 digits", line)


def toml_error(file: str | Path, text: str, error: tomllib.TOMLDecodeError) -> DataFileError:
    """tomllib's "msg (at line X, column Y)" as a DataFileError at `file:X:Y`."""
    line_attr, column_attr, msg_attr = (
        getattr(error, name, None) for name in ("lineno", "colno", "msg")
    )
    if isinstance(line_attr, int) and isinstance(column_attr, int) and isinstance(msg_attr, str):
        return DataFileError(file, "TOML", msg_attr, line_attr, column_attr)  # Python >= 3.14
    message = str(error)
    found = _POSITION.search(message)
    if found:
        return DataFileError(
            file, "TOML", message[: found.start()], int(found.group(1)), int(found.group(2))
        )
    at_end = _AT_END.search(message)
    if at_end:
        line, column = _end_position(text)
        return DataFileError(file, "TOML", message[: at_end.start()], line, column, at_end=True)
    return DataFileError(file, "TOML", message)


def loads_toml(
    text: str, file: str | Path, error_type: type[PersonaError] | None = None
) -> dict[str, Any]:
    """Parse TOML with tomllib; raise DataFileError (or `error_type`) naming `file`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        failure = toml_error(file, text, error)
    except RecursionError:
        failure = _too_deep(file, "TOML", text)
    except (ValueError, TypeError, OverflowError) as error:  # e.g. a 5,000-digit integer
        failure = _value_error(file, "TOML", text, error)
    _raise(failure, error_type)


def loads_json(
    text: str | bytes, file: str | Path, error_type: type[PersonaError] | None = None
) -> Any:
    """Parse JSON (text or bytes); raise DataFileError (or `error_type`) naming `file`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        failure = DataFileError(file, "JSON", error.msg, error.lineno, error.colno)
    except RecursionError:
        decoded = text if isinstance(text, str) else text.decode("utf-8", "replace")
        failure = _too_deep(file, "JSON", decoded, comments=False)
    except UnicodeDecodeError as error:
        failure = DataFileError(file, "JSON", f"not UTF-8 text ({error.reason})")
    except (ValueError, TypeError, OverflowError) as error:
        decoded = text if isinstance(text, str) else text.decode("utf-8", "replace")
        failure = _value_error(file, "JSON", decoded, error)
    _raise(failure, error_type)


def loads_yaml(text: str, file: str | Path, error_type: type[PersonaError] | None = None) -> Any:
    """Parse YAML with `yaml.safe_load`; raise DataFileError (or `error_type`) naming `file`.

    PyYAML must be installed (the caller checks, with its own install hint).
    """
    yaml: Any = importlib.import_module("yaml")  # untyped: no stubs installed
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        if mark is not None:
            failure = DataFileError(file, "YAML", problem, mark.line + 1, mark.column + 1)
        else:
            failure = DataFileError(file, "YAML", problem)
    except RecursionError:
        failure = _too_deep(file, "YAML", text)
    except (ValueError, TypeError, OverflowError, AttributeError) as error:
        # PyYAML's constructors let e.g. datetime's "month must be in 1..12" through
        failure = DataFileError(file, "YAML", str(error) or type(error).__name__)
    _raise(failure, error_type)
