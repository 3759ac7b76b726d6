"""Low-level helpers every layer may use, importing nothing above them.

Atomic file writes (`atomic`), one safe parser for TOML, JSON and YAML files whose errors
are one line naming file and position (`textdata`), the one reader of parsed TOML tables
with every problem as `FILE:LINE: key.path: problem` (`tables`, on the key → line scan of
the source text in `toml_scan`), TOML strings rendered by hand so they read back identical
(`toml_text`), file locks that a holder's death releases (`locks`), the cached SHA-256 of
model files (`hashing`) and optional dependencies imported with an install hint (`deps`).
Nothing here knows about scenarios, sessions, models or backends.
"""
