"""The command line: parse arguments, call the core, print; one module per command group.

`main` (in `main`, with the small commands) is the `persona-tui` entry point; `run` is the
headless `persona-tui run`, `analysis` the export, report, judge and import commands,
`doctor` prints the diagnostics. Everything below is imported lazily, inside the command
that needs it, so `persona-tui --help` stays fast.
"""

from persona_tui.cli.main import main

__all__ = ["main"]
