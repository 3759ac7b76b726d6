"""Helpers that turn untrusted text (model output, scenario text) into inert `Text`."""

from __future__ import annotations

import re

from rich.cells import cell_len, chop_cells
from rich.text import Text

from persona_tui.ui.sanitize import sanitize_for_display

_WORD = re.compile(r"\s*\S+\s*")


def inert(text: str, style: str = "") -> Text:
    """Plain text for display: escapes and controls made harmless, markup never parsed."""
    return Text(sanitize_for_display(text), style=style)


def one_line(text: str, limit: int = 160) -> str:
    """The first non-empty line of `text`, shortened to `limit` characters."""
    for line in sanitize_for_display(text).splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def duration(seconds: float | None) -> str:
    """`mm:ss` (or `h:mm:ss`), or `--:--` when unknown."""
    if seconds is None or seconds < 0:
        return "--:--"
    total = int(seconds + 0.5)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes:02}:{secs:02}"


def wrap_rows(paragraph: str, width: int) -> list[str]:
    """`paragraph` (no newlines) cut into rows of `width` cells: greedily at word starts,
    folding a word longer than a row.

    Whitespace after a word stays on its row (past the edge, cropped on display), so
    `"".join(rows) == paragraph`, and wrapping the text from any row's start on gives the
    same rows as wrapping the whole: a stream re-wraps only its last row when text arrives.
    """
    width = max(width, 1)
    rows: list[str] = []
    row_start = used = 0
    for word in _WORD.finditer(paragraph):
        start = word.start()
        visible = word.group().rstrip()
        cells = cell_len(visible)
        if used and used + cells > width:
            rows.append(paragraph[row_start:start])
            row_start, used = start, 0
        if cells <= width:
            used += cell_len(word.group())
            continue
        pieces = chop_cells(visible, width)
        for piece in pieces[:-1]:
            start += len(piece)
            rows.append(paragraph[row_start:start])
            row_start = start
        used = cell_len(pieces[-1]) + cell_len(word.group()[len(visible) :])
    rows.append(paragraph[row_start:])
    return rows
