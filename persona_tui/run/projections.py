"""The projection pass: each trial's and option cell's position along the session's traits.

After sampling and the option pass, a session whose header records traits
(`[traits.<id>]`: the control-vector file, its sha256 and the layer) gets, for every trial,
the projection of its response's mean activation at that layer on the trait's unit
direction (the response teacher-forced after the trial's exact prompt), and for every
option cell the projection of the prompt's last token (the state the options are scored
from: no sampling in it). Each arm is measured with its adapter and steering on
(run/arm_model.py), the model that generated it; the trials of a cell are measured after
their shared prompt together (`HiddenStates.hidden_states`), and saved cell by cell.
What is already measured is never measured again, so a killed pass resumes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from persona_tui.backends.base import Backend, HiddenStates, TokenLogprobs
from persona_tui.errors import PersonaError
from persona_tui.run.arm_model import ArmModels
from persona_tui.run.events import EventCallback, ProjectionsProgress
from persona_tui.scenario.model import Scenario
from persona_tui.session.model import Arm, CellKey, OptionCell, TraitRecord, Trial, TrialKey
from persona_tui.session.store import SessionStore


@dataclass
class _Unit:
    """Work on one prompt of one arm: its trials and its option cell, if they lack values."""

    arm: Arm
    probe: str
    prompt: str
    trials: list[Trial] = field(default_factory=list)
    cell: OptionCell | None = None


def trait_units(traits: Mapping[str, TraitRecord]) -> dict[str, Any]:
    """Each trait's unit direction at its recorded layer, read from the recorded file
    (PersonaError when it is gone or has changed since the session started)."""
    from persona_tui.vectors.store import load_recorded

    return {
        trait_id: load_recorded(r.vectors, r.sha256, f"measures trait {trait_id!r}").unit(r.layer)
        for trait_id, r in traits.items()
    }


def pending_units(store: SessionStore) -> list[_Unit]:
    """The prompts with a trial or a cell still to measure (every trait must have a value)."""
    session = store.session
    traits = set(session.header.traits)
    units: dict[tuple[Arm, str], _Unit] = {}

    def unit(arm: Arm, probe: str, prompt: str) -> _Unit:
        return units.setdefault((arm, prompt), _Unit(arm, probe, prompt))

    for trial in session.trials:
        if not traits <= set(trial.projections):
            unit(trial.arm, trial.probe, trial.prompt).trials.append(trial)
    for cell in session.option_cells:
        if not traits <= set(cell.projections):
            arm = Arm(cell.condition, cell.replicate)
            unit(arm, cell.probe, cell.prompt).cell = cell
    return list(units.values())


def measure_projections(
    scenario: Scenario,
    backend: Backend,
    store: SessionStore,
    on_event: EventCallback,
    cancel: threading.Event | None = None,
) -> bool:
    """Measure every trial and cell still without projections; True when none is left."""
    traits = store.session.header.traits
    if not traits:
        return True
    if not (isinstance(backend, HiddenStates) and isinstance(backend, TokenLogprobs)):
        raise PersonaError(
            f"this session records trait projections, which {backend.info.backend} cannot "
            "measure; run it with llama.cpp or MLX"
        )
    units_by_trait = trait_units(traits)
    layers = sorted({record.layer for record in traits.values()})
    work = pending_units(store)
    total = sum(len(u.trials) + (u.cell is not None) for u in work)
    done = 0
    on_event(ProjectionsProgress(0, total))
    models = ArmModels(backend, store.session.header)
    keys = models.keys({u.arm for u in work})
    order = sorted(range(len(work)), key=lambda i: (keys.get(work[i].arm, ""), work[i].prompt))
    for index in order:
        if cancel is not None and cancel.is_set():
            return False
        unit = work[index]
        models.use(unit.arm)
        trial_values, cell_values = _measure_unit(backend, unit, layers, traits, units_by_trait)
        items: list[tuple[TrialKey | CellKey, dict[str, float]]] = [
            (trial.key, values) for trial, values in zip(unit.trials, trial_values, strict=True)
        ]
        if unit.cell is not None:
            items.append((unit.cell.key, cell_values))
        store.set_projections_of(items)
        done += len(unit.trials) + (unit.cell is not None)
        on_event(ProjectionsProgress(done, total))
    return True


def _measure_unit(
    backend: Any,
    unit: _Unit,
    layers: Sequence[int],
    traits: Mapping[str, TraitRecord],
    units_by_trait: Mapping[str, Any],
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """The projections of the unit's trials (each its response's mean) and of its prompt's
    last token. An empty response has no tokens to average: its projections are NaN
    (measured, and missing for the statistics)."""
    import numpy as np

    with backend.logprob_scope() as scope:
        prompt_tokens = scope.tokenize(unit.prompt)
        continuations = [
            scope.continuation(unit.prompt, prompt_tokens, trial.response)
            if trial.response.strip()
            else []
            for trial in unit.trials
        ]
    means = backend.hidden_states(prompt_tokens, continuations, layers)
    index = {layer: k for k, layer in enumerate(means.layers)}

    def values(rows: Any) -> dict[str, float]:
        return {
            trait: round(float(np.dot(rows[index[record.layer]], units_by_trait[trait])), 6)
            for trait, record in traits.items()
        }

    trial_values = [
        values(means.means[j]) if means.counts[j] else dict.fromkeys(traits, float("nan"))
        for j in range(len(unit.trials))
    ]
    return trial_values, values(means.prompt_last)
