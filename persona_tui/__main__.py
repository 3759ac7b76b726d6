"""`python -m persona_tui` runs the command-line entry point."""

from persona_tui.cli import main

raise SystemExit(main())
