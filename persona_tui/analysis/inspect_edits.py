"""Annotations of a session imported from Inspect logs, written back as Inspect score edits.

Each original log is read with Inspect's reader and copied with the session's annotations
added by `edit_score` (the annotator as the edit's author, the annotation time as its
timestamp), and metrics recomputed; the original file is never written. Used by
`inspect_export.export_inspect` for sessions that `inspect_import` made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from persona_tui.analysis.inspect_common import (
    EXTRA_LOGS,
    EXTRA_SAMPLE_IDS,
    METRICS,
    ExportedLog,
    annotator_names,
    file_sha256,
    human_scores,
    label_ids,
    scenario_or_none,
    write_log,
)
from persona_tui.errors import PersonaError, SessionError
from persona_tui.session.model import Session, Trial

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog


def export_onto_originals(session: Session, out_dir: Path) -> list[ExportedLog]:
    """A session imported from Inspect logs: a copy of each original log, with the session's
    annotations added as score edits (`edit_score`, the annotator as the edit's author)."""
    from inspect_ai.log import read_eval_log, recompute_metrics

    extra = session.header.model.extra
    try:
        logs = json.loads(extra[EXTRA_LOGS])
        sample_ids: dict[str, str | int] = json.loads(extra.get(EXTRA_SAMPLE_IDS, "{}"))
    except (json.JSONDecodeError, TypeError) as error:
        raise SessionError(
            f"{session.path}: [model.extra] {EXTRA_LOGS!r} is not valid JSON ({error})"
        ) from None
    scenario = scenario_or_none(session)
    names = annotator_names(a.annotator for t in session.trials for a in t.annotations)
    labels = label_ids(session, scenario)
    written = []
    for entry in logs:
        source = Path(entry["path"])
        target = out_dir / source.name
        if target.resolve() == source.resolve():
            raise PersonaError(
                f"{target}: is the original log; choose another -o folder (the original "
                "stays untouched, annotations go to a copy)"
            )
        if not source.is_file():
            raise PersonaError(
                f"{source}: the Inspect log this session was imported from is missing; "
                "annotations are written to a copy of it"
            )
        if file_sha256(source) != entry["sha256"]:
            raise PersonaError(
                f"{source}: changed since it was imported (sha256 differs); re-import it or "
                "restore the original"
            )
        log = read_eval_log(str(source))
        trials = [t for t in session.trials if t.condition == entry["condition"]]
        edits = _add_edits(log, trials, sample_ids, names, labels)
        if edits:
            recompute_metrics(log)
        write_log(log, target)
        written.append(
            ExportedLog(
                target, session.header.id, entry["condition"], len(log.samples or []), edits
            )
        )
    return written


def _add_edits(
    log: EvalLog,
    trials: Sequence[Trial],
    sample_ids: dict[str, str | int],
    names: dict[str, str],
    labels: Sequence[str],
) -> int:
    from inspect_ai.log import ProvenanceData, edit_score
    from inspect_ai.scorer import ScoreEdit

    definitions: dict[str, None] = {}
    edits = 0
    for trial in trials:
        sample_id = sample_ids.get(trial.probe, trial.probe)
        for annotation in trial.annotations:
            for s in human_scores(annotation, names, labels):
                edit = ScoreEdit(
                    value=s.value,
                    answer=s.answer,
                    explanation=s.explanation,
                    metadata=dict(s.metadata),
                    provenance=ProvenanceData(
                        timestamp=_timestamp(annotation.time),
                        author=annotation.annotator,
                        reason="persona-tui annotation",
                        metadata={"blind_seed": annotation.blind_seed},
                    ),
                )
                edit_score(
                    log, sample_id, s.name, edit, recompute_metrics=False, epoch=trial.sample + 1
                )
                definitions.setdefault(s.name)
                edits += 1
    if definitions:
        _declare_scorers(log, list(definitions))
    return edits


def _declare_scorers(log: EvalLog, names: list[str]) -> None:
    """Add mean/stderr scorer definitions for the new scores, so recompute_metrics gives them
    those metrics (the log's own scorers keep theirs)."""
    spec = log.eval
    known = {s.name for s in spec.scorers or []}
    data = spec.model_dump()
    data["scorers"] = [
        *(data.get("scorers") or []),
        *({"name": n, "metrics": list(METRICS)} for n in names if n not in known),
    ]
    log.eval = type(spec).model_validate(data)


def _timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.now().astimezone()
