"""The core never imports Textual, and importing it stays light."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import persona_tui


def _core_modules() -> list[str]:
    """Every module of the package but the UI (Textual is the UI's, and only the UI's).

    `__main__` is left out: importing it runs the command.
    """
    found = ["persona_tui"]
    for module in pkgutil.walk_packages(persona_tui.__path__, "persona_tui."):
        if module.name == "persona_tui.ui" or module.name.startswith("persona_tui.ui."):
            continue
        if module.name.endswith(".__main__"):
            continue
        found.append(module.name)
    return found


CORE_MODULES = _core_modules()


def test_core_does_not_import_textual_or_engines() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE_MODULES)
        + "heavy = [m for m in ('textual', 'llama_cpp', 'mlx', 'scipy', 'numpy', 'matplotlib',"
        " 'torch', 'transformers', 'peft', 'gguf', 'httpx')"
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
