"""Make model output safe to show in a terminal.

Model output is data: it may contain Rich markup, ANSI/OSC escape sequences or control
characters. Sessions store it byte-for-byte; this module prepares a copy for display
only. Escape sequences are removed whole; other control characters become visible
Unicode "control pictures" (so a researcher can see that the model emitted them); text
is then rendered as plain `rich.text.Text`, never parsed as markup.
"""

from __future__ import annotations

import re

# ESC-introduced sequences: CSI (ESC [ ... final), OSC/DCS/SOS/PM/APC strings ended by
# BEL or ST (ESC \) or the end of the text, and two-character escapes (ESC + one byte).
_ESCAPES = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*[@-~]?                       # CSI
    | \x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\|$)    # OSC, DCS, SOS, PM, APC
    | \x9b[0-?]*[ -/]*[@-~]?                       # 8-bit CSI
    | [\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x9c|\x1b\\|$)  # 8-bit string controls
    | \x1b[ -~]?                                   # other escapes (and a lone ESC)
    """,
    re.VERBOSE,
)
# Controls kept as they are: newline and tab.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")
# Bidirectional overrides can reorder what is displayed ("trojan source"); make them visible.
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟
    if code == 0x7F:
        return "\u2421"  # ␡
    return "\ufffd"  # C1 controls have no control picture


def sanitize_for_display(text: str) -> str:
    """A copy of `text` without terminal escape sequences and with visible control characters.

    Keeps newlines and tabs; turns `\\r\\n` into `\\n`. The result is meant for
    `rich.text.Text(...)`, never for markup parsing.
    """
    text = text.replace("\r\n", "\n")
    text = _ESCAPES.sub("", text)
    text = _CONTROLS.sub(_picture, text)
    return _BIDI.sub("\ufffd", text)


# Where a string control (OSC, DCS, SOS, PM, APC) begins, and what may end one.
_STRING_START = re.compile(r"\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]")
_STRING_END = re.compile(r"\x07|\x9c|\x1b\\")


class StreamSanitizer:
    """`sanitize_for_display` for text that arrives in pieces, at a cost of the piece's length.

    A piece may end inside an escape sequence (or between `\\r` and `\\n`), whose meaning
    depends on what follows; that tail is held back until the next piece completes it.
    A held string control longer than `hold_limit` characters is let go (sanitized as if
    unterminated, i.e. removed), so the held text, and the work per piece, stay bounded.
    """

    def __init__(self, hold_limit: int = 4096) -> None:
        self._held = ""
        self._hold_limit = hold_limit

    def feed(self, text: str) -> str:
        """The display text that `text` (after the earlier pieces) adds for certain."""
        pending = self._held + text
        cut = _open_tail_start(pending)
        if len(pending) - cut > self._hold_limit:
            cut = len(pending)
        self._held = pending[cut:]
        return sanitize_for_display(pending[:cut])

    def flush(self) -> str:
        """The display text of what is still held (the stream has ended)."""
        held, self._held = self._held, ""
        return sanitize_for_display(held)


def _open_tail_start(text: str) -> int:
    """Where the part of `text` begins that more text could still change on display."""
    cut = len(text) - 1 if text.endswith("\r") else len(text)
    last = _last_match(_ESCAPES, text)
    if last is not None and last.end() == len(text):  # a sequence that may go on
        cut = min(cut, last.start())
    string = _last_match(_STRING_START, text)
    if string is not None and not _STRING_END.search(text, string.end()):  # not ended yet
        cut = min(cut, string.start())
    return cut


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None
