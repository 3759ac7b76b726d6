"""persona-tui: an offline workbench for persona role-play studies of language models."""

__version__ = "0.1.0"
