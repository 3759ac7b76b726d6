"""What the screens may ask of the app, typed, without importing the app module.

Screens reach the app with `getters.app(PersonaAppBase)`; `PersonaApp` (app.py) is the
implementation and imports the screens lazily. Keeping this interface apart keeps the
imports one way: app.py → screens → app_base.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from textual.app import App

from persona_tui.backend_names import AUTO
from persona_tui.models.config import Config


class PersonaAppBase(App[int]):
    """The app's services for its screens: the config, the clock, and navigation."""

    config: Config
    clock: Callable[[], float]

    def start_run(
        self,
        scenario: object,
        model: str | None,
        resume: Path | None = None,
        *,
        backend: str = AUTO,
        adapters: Mapping[str, Path] | None = None,
        replicates: int | None = None,
    ) -> None:
        """Open the Run screen on a new run of `scenario` or on resuming `resume`."""
        raise NotImplementedError

    def start_training(self, scenario: object, model: str | None) -> None:
        """Open the Training screen on a training study (resumes its checkpoints)."""
        raise NotImplementedError

    def open_annotation(self, path: Path, *, blind: bool = False) -> None:
        """Open the Annotate screen on a session file."""
        raise NotImplementedError

    def set_config(self, **changes: str) -> None:
        """Save top-level config keys and keep them in memory."""
        raise NotImplementedError
