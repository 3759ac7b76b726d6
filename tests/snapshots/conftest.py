"""Snapshot fixtures: reuse the functional fixtures and pin the time-dependent fields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.functional.conftest import (  # noqa: F401 - fixtures re-exported for pytest
    cell_gate,
    finished_session,
    make_app,
    tiny_model,
    ui_home,
)


@pytest.fixture
def fixed_session(finished_session: Path) -> Path:  # noqa: F811
    """The finished session with a fixed creation time, so every render is identical."""
    text = finished_session.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^created = ".*"$', 'created = "2026-01-02T03:04:05+00:00"', text, count=1)
    finished_session.write_text(text, encoding="utf-8")
    return finished_session
