"""Trait projections of sessions as flat rows: one per trial × trait and per option cell ×
trait, the unit of the projections export and of their statistics (analysis/projections.py).

A trial's value is its response's mean activation at the trait's layer projected on the
trait's unit direction (kind "response"); an option cell's is the prompt's last token's
(kind "prompt", no sampling noise). The layer comes from the session's `[traits.<id>]`, the
steering of a steered condition from its `[steering.<condition>]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from persona_tui.session.model import Arm, Session

ProjectionKind = Literal["response", "prompt"]
KINDS: tuple[ProjectionKind, ...] = ("response", "prompt")


@dataclass(frozen=True)
class ProjectionRow:
    """One projection: a trial's (kind "response") or an option cell's (kind "prompt")."""

    session_id: str
    session_file: str
    scenario_id: str
    model_name: str
    model_sha256: str
    condition: str
    replicate: int  # the training run of a replicated adapter condition; 0 otherwise
    probe: str
    sample: int | None  # None for an option cell
    kind: ProjectionKind
    trait: str
    layer: int
    projection: float
    steer_trait: str | None = None  # the steered condition's trait; None: not steered
    steer_scale: float | None = None

    @property
    def arm(self) -> Arm:
        return Arm(self.condition, self.replicate)


def projection_rows(session: Session) -> list[ProjectionRow]:
    """The session's projections: its trials' (in file order), then its option cells'."""
    header = session.header
    rows: list[ProjectionRow] = []

    def add(
        condition: str, replicate: int, probe: str, sample: int | None, values: dict[str, float]
    ) -> None:
        steer = header.steering.get(condition)
        for trait, value in values.items():
            record = header.traits.get(trait)
            rows.append(
                ProjectionRow(
                    session_id=header.id,
                    session_file=str(session.path),
                    scenario_id=header.scenario_id,
                    model_name=header.model.name,
                    model_sha256=header.model.sha256,
                    condition=condition,
                    replicate=replicate,
                    probe=probe,
                    sample=sample,
                    kind="response" if sample is not None else "prompt",
                    trait=trait,
                    layer=record.layer if record is not None else -1,
                    projection=value,
                    steer_trait=steer.trait if steer is not None else None,
                    steer_scale=steer.scale if steer is not None else None,
                )
            )

    for trial in session.trials:
        add(trial.condition, trial.replicate, trial.probe, trial.sample, trial.projections)
    for cell in session.option_cells:
        add(cell.condition, cell.replicate, cell.probe, None, cell.projections)
    return rows
