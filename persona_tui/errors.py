"""Typed errors with messages a user can act on.

Every error a user can cause (a broken scenario, a missing model, a locked
session) derives from `PersonaError`; the CLI prints its message without a
traceback and exits with status 2.
"""

from __future__ import annotations


class PersonaError(Exception):
    """An error caused by input or environment, reported to the user as is."""


class ScenarioError(PersonaError):
    """A scenario file is unreadable or invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ConfigError(PersonaError):
    """The user config file is invalid."""


class ModelLoadError(PersonaError):
    """A model file is missing, not a model, corrupt, or cannot be loaded."""


class PromptTooLongError(PersonaError):
    """A prompt does not fit in the model's context window."""


class GenerationError(PersonaError):
    """The engine failed while generating."""


class SessionError(PersonaError):
    """A session file is unreadable, invalid, or cannot be written."""


class SessionLockedError(SessionError):
    """Another process is writing the same session."""


class TrainingError(PersonaError):
    """A fine-tune cannot start or continue (missing extra, a checkpoint of other settings)."""


class VectorsError(PersonaError):
    """A trait's vector files (control-vector GGUF and record) are missing, corrupt, or were
    extracted on another model."""
