"""Annotation rules: blind order, and an annotator's edits (the app's Annotate screen uses them).

Blind mode shuffles the trials with a seed derived from the session id and the
annotator's name: the order is reproducible (an annotator who comes back sees the same
order) and the seed can be recomputed from the session file alone. Every annotation saved
while conditions are hidden records that seed (`Annotation.blind_seed`); one saved seeing
the condition records None, so analysis can tell blinded judgements from the others.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from persona_tui.scenario.model import AnnotationSchema, Scale
from persona_tui.session.model import Annotation, Plan, Trial, TrialKey


def blind_seed_for(session_id: str, annotator: str) -> int:
    """The blind-mode shuffle seed: sha256 of "session id / annotator", first 4 bytes."""
    digest = hashlib.sha256(f"{session_id}/{annotator}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def trial_order(trials: Sequence[Trial], plan: Plan, blind_seed: int | None) -> list[TrialKey]:
    """The order to annotate in: plan order (condition, probe, sample), or shuffled if blind."""
    rank_c = {c: i for i, c in enumerate(plan.conditions)}
    rank_p = {p: i for i, p in enumerate(plan.probes)}
    keys = sorted(
        (t.key for t in trials),
        key=lambda k: (rank_c.get(k.condition, 1 << 30), rank_p.get(k.probe, 1 << 30), k.sample),
    )
    if blind_seed is not None:
        random.Random(blind_seed).shuffle(keys)
    return keys


def annotation_by(trial: Trial, annotator: str) -> Annotation | None:
    """This annotator's annotation of a trial, if any."""
    return next((a for a in trial.annotations if a.annotator == annotator), None)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def with_label(
    previous: Annotation | None, annotator: str, label: str, *, blind_seed: int | None
) -> Annotation:
    """Set the label; `blind_seed` is the shuffle seed if conditions are hidden, else None."""
    base = previous or Annotation(annotator=annotator, time=now_iso())
    return replace(base, label=label, time=now_iso(), blind_seed=blind_seed)


def with_score(
    previous: Annotation | None,
    annotator: str,
    scale: Scale,
    value: int,
    *,
    blind_seed: int | None,
) -> Annotation:
    """Set a scale's score, clamped to the scale's bounds (`blind_seed` as in `with_label`)."""
    base = previous or Annotation(annotator=annotator, time=now_iso())
    scores = dict(base.scores)
    scores[scale.id] = max(scale.min, min(scale.max, value))
    return replace(base, scores=scores, time=now_iso(), blind_seed=blind_seed)


def with_note(
    previous: Annotation | None, annotator: str, note: str, *, blind_seed: int | None
) -> Annotation:
    """Set the note (`blind_seed` as in `with_label`)."""
    base = previous or Annotation(annotator=annotator, time=now_iso())
    return replace(base, note=note, time=now_iso(), blind_seed=blind_seed)


def is_done(annotation: Annotation | None, schema: AnnotationSchema) -> bool:
    """Annotated = a label set (when the schema has labels), else any score or note."""
    if annotation is None:
        return False
    if schema.labels:
        return bool(annotation.label)
    return bool(annotation.scores or annotation.note)
