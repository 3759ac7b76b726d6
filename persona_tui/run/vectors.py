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
from persona_tui.run.events import EventCallback, ProjectionsSkipped
from persona_tui.run.extract import NOT_MEASURABLE, can_measure, extract_traits
from persona_tui.scenario.model import Condition, Scenario, Trait
from persona_tui.session.model import SessionHeader, SteeringRecord, TraitRecord

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
    if declared and projections and not can_measure(backend):
        on_event(ProjectionsSkipped(f"trait projections not recorded: {NOT_MEASURABLE}"))
    _check_steered_found(scenario, steered, backend, folders, model_ref)
    wanted = set(declared) if projections and can_measure(backend) else set()
    wanted |= {c.steer.trait for c in steered if c.steer is not None} & set(declared)
    missing = [
        declared[t]
        for t in sorted(wanted)
        if _find(t, folders) in (None, folders[-1]) and _stale(declared[t], folders)
    ]
    if missing:
        extract_traits(scenario, backend, missing, folders[-1], on_event, cancel=cancel)

    def found(trait_id: str) -> TraitVectors:
        return find_trait(
            trait_id,
            backend.info.sha256,
            folders,
            scenario_id=scenario_ref(scenario),
            model_ref=model_ref,
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
        if layer not in vectors.layers:  # refused here, before any trial runs
            raise PersonaError(
                f"condition {condition.id} steers along {steer.trait} at layer {layer}, but "
                f"{vectors.gguf_path} has directions at layers "
                f"{', '.join(map(str, vectors.layers))} only"
            )
        steering[condition.id] = SteeringRecord(
            condition=condition.id,
            trait=steer.trait,
            layer=layer,
            scale=steer.scale,
            vectors=str(vectors.gguf_path),
            sha256=vectors.sha256,
        )
    return traits, steering


def scenario_ref(scenario: Scenario) -> str:
    """How a command names `scenario`: its id when that finds this file (a built-in or
    user scenario), else the path it was loaded from (`persona-tui vectors PATH`)."""
    from persona_tui.errors import ScenarioError
    from persona_tui.scenario.catalog import resolve_scenario

    try:
        if resolve_scenario(scenario.id).resolve() == Path(scenario.source_path).resolve():
            return scenario.id
    except (ScenarioError, OSError):
        pass
    return scenario.source_path if scenario.source_path != "<string>" else scenario.id


def _check_steered_found(
    scenario: Scenario,
    steered: Sequence[Condition],
    backend: Backend,
    folders: Sequence[Path],
    model_ref: str,
) -> None:
    """Stop before anything is extracted or run when a steered condition's trait is not
    declared here and no folder holds it: say which scenario-level command makes it."""
    declared = {trait.id for trait in scenario.traits}
    for condition in steered:
        assert condition.steer is not None
        trait = condition.steer.trait
        if trait in declared or _find(trait, folders) is not None:
            continue
        searched = ", ".join(str(f) for f in folders)
        raise PersonaError(
            f"condition {condition.id} steers along trait {trait!r}, which {scenario.id} does "
            f"not declare and no vectors folder holds for this model (searched: {searched}); "
            f"extract it from a scenario that declares it, `persona-tui vectors SCENARIO "
            f"--model {model_ref} -o DIR`, and run with `--vectors DIR`"
        )


def _stale(trait: Trait, folders: Sequence[Path]) -> bool:
    """Whether the scenario's own folder lacks vectors of `trait` as declared now: none,
    or a record of other instructions, questions or samples (the trait was edited since
    it was extracted: its old directions would measure another trait). A folder
    `--vectors` names is the user's choice and is taken as it is."""
    from persona_tui.vectors.record import read_record, record_path
    from persona_tui.vectors.store import gguf_path

    folder = folders[-1]
    path = record_path(folder, trait.id)
    if not (gguf_path(folder, trait.id).is_file() and path.is_file()):
        return True
    record = read_record(path)
    made = (record.positive, record.negative, record.questions, record.samples)
    return made != (trait.positive, trait.negative, trait.questions, trait.samples)


def _find(trait_id: str, folders: Sequence[Path]) -> Path | None:
    """The folder of `folders` holding the trait's vectors for this model, if any."""
    from persona_tui.vectors.store import gguf_path

    for folder in folders:
        if gguf_path(folder, trait_id).is_file():
            return folder
    return None


def check_same_vectors(header: SessionHeader) -> None:
    """Refuse to resume a session whose trait or steering vectors (the control-vector
    files its header records) are gone, changed or unreadable since it started: its
    projections or steered trials would come from other directions. Checked up front, so
    nothing is measured or generated before the refusal."""
    from persona_tui.vectors.store import load_recorded

    for t in header.traits.values():
        load_recorded(t.vectors, t.sha256, f"measures trait {t.trait!r}")
    for s in header.steering.values():
        load_recorded(s.vectors, s.sha256, f"steers condition {s.condition!r}")
