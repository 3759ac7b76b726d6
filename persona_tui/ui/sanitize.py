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
