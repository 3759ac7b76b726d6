"""The core never imports Textual, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

CORE_MODULES = [
    "persona_tui",
    "persona_tui.cli",
    "persona_tui.config",
    "persona_tui.paths",
    "persona_tui.scenario",
    "persona_tui.prompts",
    "persona_tui.runner",
    "persona_tui.session",
    "persona_tui.models",
    "persona_tui.headless",
    "persona_tui.backends.base",
    "persona_tui.backends.llamacpp",
    "persona_tui.backends.mlx",
    "persona_tui.backends.openai",
    "persona_tui.analysis",
    "persona_tui.scoring.judge",
    "persona_tui.cli_analysis",
    "persona_tui.importers",
]


def test_core_does_not_import_textual_or_engines() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE_MODULES)
        + "heavy = [m for m in ('textual', 'llama_cpp', 'mlx', 'scipy', 'numpy', 'matplotlib')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"core imported heavy modules at import time: {out}"


def test_help_runs_without_heavy_imports() -> None:
    code = (
        "import sys\nfrom persona_tui.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('textual' in sys.modules, 'llama_cpp' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "run" in result.stdout
    assert result.stderr.strip() == "False False"
