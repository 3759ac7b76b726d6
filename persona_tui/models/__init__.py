"""Models: what the user can pick and how it is loaded.

Model references (`refs`; the backend names are in `persona_tui.backend_names`),
discovery of the bundled demo model, config aliases and local model caches (`discovery`,
`scan`), loading a reference with its backend (`load`, through backends/registry.py),
the user config (`config`) and the checks of `persona-tui doctor` (`diagnostics`).
"""
