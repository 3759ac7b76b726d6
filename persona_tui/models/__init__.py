"""Models: what the user can pick and how it is loaded.

Model references and backend names (`refs`), discovery of the bundled demo model, config
aliases and local model caches (`discovery`, `scan`), loading a reference with its
backend (`load`, the one place that maps a backend name to its implementation), the
user config (`config`) and the checks of `persona-tui doctor` (`diagnostics`).
"""
