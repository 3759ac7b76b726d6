"""Low-level helpers every layer may use, importing nothing above them.

Atomic file writes (`atomic`), one safe parser for TOML, JSON and YAML files whose errors
are one line naming file and position (`textdata`), the cached SHA-256 of model files
(`hashing`), TOML strings rendered by hand so they read back identical (`toml_text`) and
optional dependencies imported with an install hint (`deps`). Nothing here knows about
scenarios, sessions, models or backends.
"""
