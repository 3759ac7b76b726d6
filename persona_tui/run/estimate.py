"""How long an option pass will take on this machine, from the sessions it already scored.

A study prints its probing work before it starts (`persona-tui study`); the rate comes from
the option cells of earlier sessions in the study folder (their `seconds` per cell, over
the options they scored), so it is this machine's and this model's. None when there are
none: the option pass then shows its own time left as it goes (ui/eta.py, the CLI's bar).
"""

from __future__ import annotations

from pathlib import Path

from persona_tui.errors import PersonaError
from persona_tui.session.read import read_session_file


def option_seconds_per_option(folder: Path) -> float | None:
    """Seconds per scored answer option over the option cells of the sessions in `folder`
    (`session*.toml`); None without any (an unreadable session is skipped)."""
    seconds = 0.0
    options = 0
    for path in sorted(Path(folder).glob("session*.toml")):
        try:
            session = read_session_file(path)
        except PersonaError:
            continue
        for cell in session.option_cells:
            if cell.batch:  # scored together, as today (not one by one, as sessions before)
                seconds += cell.seconds
                options += len(cell.options)
    return seconds / options if options else None
