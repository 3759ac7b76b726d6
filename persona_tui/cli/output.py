"""What the CLI's analysis and import commands write: text exactly, to a file or stdout.

Shared by `cli.analysis` and `cli.importers`: `write_text` writes chunks without newline
translation (a closed pipe, as with `| head`, is not an error), `write_new` refuses to
overwrite a file without `--force`, `warn` prints warnings to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from persona_tui.errors import PersonaError


def write_text(chunks: Iterable[str], output: Path | None) -> None:
    """Write text exactly (no newline translation), to a file or stdout."""
    if output is None:
        sys.stdout.flush()
        stream = sys.stdout.buffer
        try:
            for chunk in chunks:
                stream.write(chunk.encode("utf-8"))
            stream.flush()
        except BrokenPipeError:  # `| head`: the reader left; not an error
            pass
        return
    try:
        with output.open("w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
    except OSError as error:
        raise PersonaError(f"{output}: cannot write: {error.strerror or error}") from None


def write_new(text: str, output: Path | None, force: bool, what: str = "scenario") -> None:
    """Write a new file (or stdout), refusing to overwrite one without `force`, and say where."""
    if output is not None and output.exists() and not force:
        raise PersonaError(f"{output}: already exists; pass --force to overwrite it")
    write_text([text], output)
    if output is not None:
        check = f" (check it with: persona-tui validate {output})" if what == "scenario" else ""
        print(f"{what} → {output}{check}", file=sys.stderr)


def warn(lines: Iterable[str]) -> None:
    """Print each line to stderr as a persona-tui warning."""
    for line in lines:
        print(f"persona-tui: warning: {line}", file=sys.stderr)
