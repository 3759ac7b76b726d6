"""One door for a run: only `persona_tui/run/` opens sessions, runs trials and scores options.

The CLI (`persona-tui run`), `persona-tui study` and the app's Run screen each open a run
with `run.lifecycle.open_run` and finish it with `run.finish.finish_run`; none loads a
model for a run, checks adapters or creates a session of its own. Read from the source
(every call, wherever it sits), so a shortcut around the door fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import persona_tui

PACKAGE = Path(persona_tui.__file__).parent

# What only run/ may call: open or create a session file, run trials, score options, and
# the halves of opening a run.
RUN_ONLY = {
    "create",  # SessionStore.create
    "open",  # SessionStore.open
    "Runner",
    "score_options",
    "create_session",
    "resume_session",
    "check_adapters_load",
    "check_same_adapters",
}
# Importing Inspect logs writes a session from the logs (nothing is run): the one exception.
ALLOWED = {("analysis/inspect_import.py", "create")}
# The run's three consumers: one call each into run/, no model loading of their own.
CONSUMERS = ("cli/run.py", "cli/study.py", "ui/screens/run.py")


def _calls(tree: ast.AST) -> set[str]:
    """The names called in `tree`: `f(...)` gives f; `SessionStore.x(...)` gives x."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            found.add(func.id)
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "SessionStore"
        ):
            found.add(func.attr)
    return found


def _modules() -> dict[str, ast.Module]:
    return {
        path.relative_to(PACKAGE).as_posix(): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_only_run_opens_sessions_runs_trials_and_scores_options() -> None:
    strays = [
        f"{name} calls {call}"
        for name, tree in _modules().items()
        if not name.startswith(("run/", "session/"))
        for call in sorted(_calls(tree) & RUN_ONLY)
        if (name, call) not in ALLOWED
    ]
    assert not strays, "outside run/: " + "; ".join(strays)


def test_the_consumers_open_and_finish_a_run_through_run_alone() -> None:
    modules = _modules()
    for name in CONSUMERS:
        tree = modules[name]
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module is not None
        }
        assert "persona_tui.models.load" not in imported, f"{name} loads a model itself"
        calls = _calls(tree)
        assert {"open_run", "finish_run"} <= calls, f"{name} does not use the door"
        assert not calls & {"load_model", "load_backend", "study_adapters"}, name
