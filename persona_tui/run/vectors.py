"""Which trait vectors a new run measures and steers with, found (or extracted) once.

A scenario that declares traits has its runs record projections on them: the vectors are
looked for in the folders `run --vectors DIR` names, then in the scenario's own folder in
the data folder (vectors/store.default_folder: one per model and scenario); a declared
trait found nowhere is extracted there first (run/extract.py, with the loaded model), so
a run of the built-in `bully-school-play` records its `malice` projections out of the box.
A steered condition's trait is looked for the same way; one the scenario does not declare
and no folder holds stops the run before anything starts, with the command that extracts
it. What was chosen is recorded in the session header (`[traits.*]`, `[steering.*]`: the
file, its sha256, the layer, the scale), which is all a resume and the passes read.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from persona_tui.backends.base import Backend
from persona_tui.errors import PersonaError
from persona_tui.run.events import EventCallback
from persona_tui.run.extract import NOT_MEASURABLE, can_measure, extract_traits
from persona_tui.scenario.model import Scenario
from persona_tui.session.model import SteeringRecord, TraitRecord

if TYPE_CHECKING:
    from persona_tui.vectors.store import TraitVectors


def vector_folders(scenario: Scenario, backend: Backend, given: Sequence[Path]) -> list[Path]:
    """Where a run looks for trait vectors: the folders given, then the scenario's own."""
    from persona_tui.vectors.store import default_folder

    return [*given, default_folder(backend.info.sha256, scenario.id)]


def resolve_vectors(
    scenario: Scenario,
    backend: Backend,
    given: Sequence[Path],
    model_ref: str,
    on_event: EventCallback,
    *,
    conditions: Sequence[str] | None = None,
    projections: bool = True,
    cancel: threading.Event | None = None,
) -> tuple[dict[str, TraitRecord], dict[str, SteeringRecord]]:
    """The traits a new run of `scenario` (its `conditions`; None: all) measures (none
    when `projections` is off or the engine cannot read activations) and its steered
    conditions' vectors.

    Declared traits with no vectors anywhere are extracted into the scenario's folder.
    Raises PersonaError when a steered condition's trait cannot be found, or the engine
    cannot steer.
    """
    from persona_tui.vectors.store import find_trait

    folders = vector_folders(scenario, backend, given)
    chosen = set(conditions) if conditions is not None else None
    steered = [
        c for c in scenario.conditions if c.steer is not None and (chosen is None or c.id in chosen)
    ]
    if steered and not can_measure(backend):
        raise PersonaError(f"this scenario steers conditions, but {NOT_MEASURABLE}")
    declared = {trait.id: trait for trait in scenario.traits}
    wanted = set(declared) if projections and can_measure(backend) else set()
    wanted |= {c.steer.trait for c in steered if c.steer is not None} & set(declared)
    missing = [declared[t] for t in sorted(wanted) if _find(t, backend, folders) is None]
    if missing:
        extract_traits(scenario, backend, missing, folders[-1], on_event, cancel=cancel)

    def found(trait_id: str) -> TraitVectors:
        return find_trait(
            trait_id, backend.info.sha256, folders, scenario_id=scenario.id, model_ref=model_ref
        )

    traits: dict[str, TraitRecord] = {}
    if projections and can_measure(backend):
        for trait_id, trait in declared.items():
            vectors = found(trait_id)
            layer = trait.layer if trait.layer is not None else vectors.recommended_layer
            traits[trait_id] = TraitRecord(
                trait=trait_id,
                layer=layer,
                vectors=str(vectors.gguf_path),
                sha256=vectors.sha256,
                norm=round(vectors.norm(layer), 6),
            )
    steering: dict[str, SteeringRecord] = {}
    for condition in steered:
        steer = condition.steer
        assert steer is not None
        vectors = found(steer.trait)
        own = declared.get(steer.trait)
        layer = steer.layer or (own.layer if own and own.layer else vectors.recommended_layer)
        steering[condition.id] = SteeringRecord(
            condition=condition.id,
            trait=steer.trait,
            layer=layer,
            scale=steer.scale,
            vectors=str(vectors.gguf_path),
            sha256=vectors.sha256,
        )
    return traits, steering


def _find(trait_id: str, backend: Backend, folders: Sequence[Path]) -> Path | None:
    """The folder of `folders` holding the trait's vectors for this model, if any."""
    from persona_tui.vectors.store import gguf_path

    for folder in folders:
        if gguf_path(folder, trait_id).is_file():
            return folder
    return None
