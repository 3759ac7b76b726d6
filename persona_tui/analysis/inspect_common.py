"""What persona-tui and Inspect AI logs share: the inspect-ai requirement and the names of scores.

The Inspect mapping itself is in `inspect_export` (sessions → logs, each trial a sample by
`inspect_samples`; logs an import came from are edited by `inspect_edits`) and
`inspect_import` (logs → a session); docs/export-format.md describes it field by field.
Nothing here imports inspect_ai at module level: the core works without the `inspect`
extra.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog

from persona_tui._util.deps import MissingDependencyError, install_hint, require
from persona_tui.errors import PersonaError, ScenarioError
from persona_tui.scenario.model import Scenario
from persona_tui.session.as_run import scenario_as_run
from persona_tui.session.model import Annotation, Session

# recompute_metrics() builds metrics from the scorer definitions in the log header only since
# 0.3.225; before, it loaded each scorer by registry name, which fails for logs not written by
# an Inspect task (0.3.224 raises LookupError on our scores). edit_score(epoch=...) adding new
# scores and the NaN "unscored" sentinel are older. Keep in step with pyproject.toml's extra.
MIN_INSPECT_AI = (0, 3, 225)

# Keys of `[model.extra]` in a session imported from Inspect logs (docs/export-format.md).
EXTRA_LOGS = "inspect.logs"  # JSON: [{condition, path, sha256, eval_id, task, model}]
EXTRA_SAMPLE_IDS = "inspect.sample_ids"  # JSON: {probe id: the sample's id in the logs}

# Every score persona-tui writes gets these metrics (Inspect's registered `mean`, `stderr`).
METRICS: tuple[dict[str, str], ...] = ({"name": "mean"}, {"name": "stderr"})

_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def require_inspect(purpose: str) -> None:
    """Check that inspect-ai is importable and new enough; else one line naming the install."""
    require("inspect_ai.log", purpose, extra="inspect")
    try:
        version = metadata.version("inspect-ai")
    except metadata.PackageNotFoundError:  # a checkout on sys.path: trust it
        return
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    if numbers < MIN_INSPECT_AI:
        wanted = ".".join(map(str, MIN_INSPECT_AI))
        raise MissingDependencyError(
            f"{purpose} needs inspect-ai >= {wanted} (found {version}): {install_hint('inspect')}"
        )


def name_part(text: str, fallback: str) -> str:
    """`text` as a part of an Inspect score name: letters, digits, '_', '.', '-'."""
    return _NAME_BAD.sub("-", text.strip()).strip("-") or fallback


def annotator_names(annotators: Iterable[str]) -> dict[str, str]:
    """A distinct score-name part per annotator (two that clean up alike get -2, -3, ...)."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for annotator in annotators:
        if annotator in names:
            continue
        base = name_part(annotator, "annotator")
        candidate, n = base, 2
        while candidate in used:
            candidate, n = f"{base}-{n}", n + 1
        used.add(candidate)
        names[annotator] = candidate
    return names


def label_score_name(label: str, annotator_part: str) -> str:
    """One annotator's one-hot score of one label: 1 when they chose it, else 0."""
    return f"label_{name_part(label, 'label')}_by_{annotator_part}"


def scale_score_name(scale: str, annotator_part: str) -> str:
    return f"scale_{name_part(scale, 'scale')}_by_{annotator_part}"


def judge_score_name(rubric: str) -> str:
    return f"judge_{name_part(rubric, 'rubric')}"


def file_sha256(path: Path) -> str:
    """The sha256 of a log file (small: read in 1 MiB blocks, not cached)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class HumanScore:
    """One score an annotation gives: its name, value and the Score's other fields."""

    name: str
    value: int
    answer: str | None
    explanation: str | None
    metadata: dict[str, Any]


def human_scores(
    annotation: Annotation, names: dict[str, str], labels: Sequence[str]
) -> Iterator[HumanScore]:
    """The scores of one annotation: a 0/1 score per label (one-hot) when it set a label, and
    one per scale it set; the note is each one's explanation."""
    part = names[annotation.annotator]
    meta = {
        "annotator": annotation.annotator,
        "time": annotation.time,
        "label": annotation.label,
        "blind": annotation.blind_seed is not None,
        "blind_seed": annotation.blind_seed,
        "source": "persona-tui annotation",
    }
    note = annotation.note or None
    if annotation.label:
        for label in labels:
            value = 1 if label == annotation.label else 0
            yield HumanScore(label_score_name(label, part), value, annotation.label, note, meta)
    for scale, value in annotation.scores.items():
        yield HumanScore(scale_score_name(scale, part), value, str(value), note, meta)


@dataclass(frozen=True)
class ExportedLog:
    """One log written: where, for which session and condition, with how many samples."""

    path: Path
    session_id: str
    condition: str
    samples: int
    edits: int = 0  # score edits added to a copy of an original log (imported sessions)


def write_log(log: EvalLog, target: Path) -> None:
    """Write `log` as a `.eval` file with Inspect's writer; PersonaError naming the file."""
    from inspect_ai.log import write_eval_log

    try:
        write_eval_log(log, str(target), format="eval")
    except OSError as error:
        raise PersonaError(f"{target}: cannot write the log: {error.strerror or error}") from None


def scenario_or_none(session: Session) -> Scenario | None:
    """The scenario copy of a session, or None when it does not validate."""
    try:
        return scenario_as_run(session, as_copy=True)
    except ScenarioError:
        return None


def label_ids(session: Session, scenario: Scenario | None) -> list[str]:
    """Every label of the schema, then any other label an annotation used (one-hot keys)."""
    labels = [label.id for label in scenario.annotation.labels] if scenario else []
    for trial in session.trials:
        for annotation in trial.annotations:
            if annotation.label and annotation.label not in labels:
                labels.append(annotation.label)
    return labels
