"""`python -m persona_tui`: the same as the `persona-tui` command."""

import sys

from persona_tui.cli import main

sys.exit(main())
