"""Sessions: the record of a run and its file.

The session model (frozen dataclasses in `model`), its TOML form (`read`, `write`, with
the rules both share in `schema`) and the store that writes a session file atomically
after every trial and every annotation, under a lock (`store`). A session file holds the
model and sampling record, a copy of the scenario as run and one `[[trials]]` table per
finished trial with its annotations. See docs/session-format.md.
"""
