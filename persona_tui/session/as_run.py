"""The scenario as run: the copy of the scenario file stored in a session, parsed.

Resuming, annotating, comparing, analysing and judging a session all use this copy, never
the scenario file on disk (which may have changed since the run).
"""

from __future__ import annotations

from pathlib import Path

from persona_tui.scenario.model import Scenario
from persona_tui.scenario.parse import parse_scenario
from persona_tui.session.model import Session


def scenario_copy_name(session_path: Path) -> str:
    """How problems in a session's scenario copy name it: `<session file> (scenario copy)`."""
    return f"{session_path} (scenario copy)"


def scenario_as_run(session: Session, *, as_copy: bool = False) -> Scenario:
    """Parse the scenario copy stored in `session`; raise ScenarioError if it does not validate.

    The scenario's `source_path` is the file it was run from (as recorded), so a new run
    of it records the same origin; with `as_copy`, problems and `source_path` name the
    copy inside the session file instead (`scenario_copy_name`), for analysis and judging.
    """
    header = session.header
    name = scenario_copy_name(session.path) if as_copy else header.scenario_path
    # A training study's examples are not needed to probe, annotate or analyse a session
    # (and need not sit beside it): they are left unread.
    return parse_scenario(header.scenario_source, name, read_training_examples=False)
