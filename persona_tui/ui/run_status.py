"""What the Run screen's header and message say while a run gets ready and while it reads
activations: the model loading, a trait's vectors extracted (before the session opens) and
the projection pass (after the option pass)."""

from __future__ import annotations

from rich.text import Text

from persona_tui.run.events import (
    ModelLoading,
    ProjectionsProgress,
    RunEvent,
    VectorsExtracted,
    VectorsProgress,
)
from persona_tui.ui.text import inert


def run_status(event: RunEvent) -> tuple[str, Text] | None:
    """(the header's state, the message) for a status event; None for the others."""
    if isinstance(event, ModelLoading):
        text = Text("Loading model ", style="bold")
        text.append_text(inert(event.ref))
        text.append(" …")
        return "loading model", text
    if isinstance(event, ProjectionsProgress):
        return f"projections {event.done}/{event.total}", Text(
            f"Measuring trait projections: {event.done} of {event.total} trials and cells",
            style="bold",
        )
    if isinstance(event, VectorsExtracted):
        return f"{event.trait} vectors ready", Text(
            f"Trait {event.trait}: vectors extracted in {event.seconds:.0f} s, layer "
            f"{event.layer} (held-out AUC {event.auc:.2f})"
        )
    if isinstance(event, VectorsProgress):
        text = Text(f"Extracting trait {event.trait}: ", style="bold")
        text.append(f"{event.phase} answers {event.done}/{event.total} (once per model)")
        return f"{event.trait} vectors: {event.phase} {event.done}/{event.total}", text
    return None
