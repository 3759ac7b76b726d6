"""TOML strings and keys rendered by hand, so that they read back identical.

Every control character, escape sequence and "\\r" is escaped; text with newlines is
written as a readable multi-line string, and the result is safe to `cat`. A lone
surrogate, which UTF-8 and TOML cannot store, is refused with a SessionError.
"""

from __future__ import annotations

import re

from persona_tui.errors import SessionError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# One-line basic strings escape every C0/C1 control, DEL, '"' and '\'.
_ESCAPE_ONE_LINE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')
# Multi-line strings keep "\n" and "\t" raw. A '"' is escaped when another '"' or the end
# follows, so no '"""' can appear inside and the closing delimiter is unambiguous.
_ESCAPE_MULTILINE = re.compile(r'[\x00-\x08\x0b-\x1f\x7f-\x9f\\]|"(?="|\Z)')
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_ESCAPES = {chr(c): f"\\u{c:04x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update(_SHORT_ESCAPES)
_ESCAPES.update({'"': '\\"', "\\": "\\\\"})


def _escape(match: re.Match[str]) -> str:
    return _ESCAPES[match.group()]


def _check_storable(value: str, where: str) -> None:
    surrogate = _SURROGATE.search(value)
    if surrogate:
        raise SessionError(
            f"{where} contains a lone surrogate (U+{ord(surrogate.group()):04X} at index "
            f"{surrogate.start()}), which UTF-8 and TOML cannot store; the backend must replace "
            "it (e.g. with U+FFFD) before the trial is saved"
        )


def render_string(value: str, where: str = "value") -> str:
    """`value` as a TOML basic string that reads back identical (multi-line if it has "\\n")."""
    _check_storable(value, where)
    if "\n" in value:
        # The newline right after the opening quotes is dropped by every TOML parser.
        return '"""\n' + _ESCAPE_MULTILINE.sub(_escape, value) + '"""'
    return '"' + _ESCAPE_ONE_LINE.sub(_escape, value) + '"'


def render_key(key: str) -> str:
    """`key` bare when TOML allows it, quoted otherwise."""
    if _BARE_KEY.match(key):
        return key
    _check_storable(key, f"key {key!r}")
    return '"' + _ESCAPE_ONE_LINE.sub(_escape, key) + '"'  # keys cannot be multi-line strings
