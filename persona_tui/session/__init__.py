"""Sessions: the record of a run and its file.

The session model (frozen dataclasses in `model`), its TOML form (`read`, on the typed
readers of `fields`, and `write`, with the rules both share in `schema`), the store that
writes a session file atomically after every trial and every annotation, under a lock
(`store`), the scenario copy as run (`as_run`), the sessions of a folder (`index`) and the
annotation rules, blind order included (`annotating`). A session file holds the model and
sampling record, a copy of the scenario as run, the traits measured and steered conditions
(`[traits.<id>]`, `[steering.<condition>]`) and one `[[trials]]` table per finished trial
with its annotations and trait projections. See docs/session-format.md.
"""
