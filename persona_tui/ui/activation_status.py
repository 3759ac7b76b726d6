"""What the Run screen says while a run reads activations: extracting a trait's vectors
(before the session opens) and the projection pass (after the option pass)."""

from __future__ import annotations

from rich.text import Text

from persona_tui.run.events import ProjectionsProgress, VectorsExtracted, VectorsProgress


def activation_state(event: VectorsProgress | VectorsExtracted | ProjectionsProgress) -> str:
    """The run header's state line for `event`."""
    if isinstance(event, ProjectionsProgress):
        return f"projections {event.done}/{event.total}"
    if isinstance(event, VectorsExtracted):
        return f"{event.trait} vectors ready"
    return f"{event.trait} vectors: {event.phase} {event.done}/{event.total}"


def activation_message(event: VectorsProgress | VectorsExtracted | ProjectionsProgress) -> Text:
    """The Run screen's message for `event` (trait ids are the scenario's: inert text)."""
    if isinstance(event, ProjectionsProgress):
        return Text(
            f"Measuring trait projections: {event.done} of {event.total} trials and cells",
            style="bold",
        )
    if isinstance(event, VectorsExtracted):
        return Text(
            f"Trait {event.trait}: vectors extracted in {event.seconds:.0f} s, layer "
            f"{event.layer} (held-out AUC {event.auc:.2f})"
        )
    text = Text(f"Extracting trait {event.trait}: ", style="bold")
    text.append(f"{event.phase} answers {event.done}/{event.total} (once per model)")
    return text
