"""What a session file may hold, shared by its writer and its reader.

`write` refuses exactly what `read` would refuse, so a saved session always
loads; the allowed values and the field-type helper they both check against live here,
once. Format: docs/session-format.md.
"""

from __future__ import annotations

STATUSES = ("running", "complete", "interrupted")
FINISH_REASONS = ("stop", "length", "cancelled")
PROMPT_MODES = ("chat", "transcript")
INT64_BOUND = 2**63  # TOML integers are 64-bit: -INT64_BOUND <= n < INT64_BOUND


def optional_base(type_name: str) -> str | None:
    """The base type of an `X | None` field's type string ("int | None" -> "int"), else None.

    Dataclass field types are strings here because the backend modules use
    `from __future__ import annotations`.
    """
    parts = [p.strip() for p in type_name.split("|")]
    if len(parts) == 2 and "None" in parts:
        parts.remove("None")
        return parts[0]
    return None


def adapter_key(condition: str, replicate: int) -> str:
    """The key of an adapter's table in `[adapters]`: the condition, "learns/2" for the
    replicate 2 of a replicated study (its table also holds `replicate = 2`)."""
    return f"{condition}/{replicate}" if replicate else condition
