"""The command line: parse arguments, call the core, print; one module per command group.

`main` (in `main`, with the small commands) is the `persona-tui` entry point; `run` is the
headless `persona-tui run`, `train` the LoRA fine-tunes, `study` the train-then-run study,
`analysis` the export, report and judge commands, `importers` the import commands, `output`
what those two write, `doctor` prints the diagnostics. Everything below is imported lazily,
inside the command that needs it, so `persona-tui --help` stays fast.
"""

from persona_tui.cli.main import main

__all__ = ["main"]
