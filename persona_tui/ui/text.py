"""Helpers that turn untrusted text (model output, scenario text) into inert `Text`."""

from __future__ import annotations

from rich.text import Text

from persona_tui.ui.sanitize import sanitize_for_display


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
