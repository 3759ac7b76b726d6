"""Judge scores, stored apart from the session in a sidecar file `<session stem>.judge.toml`.

Human annotations live in the session file, which has a single writer (the SessionStore);
automatic scores go next to it so they can never overwrite an annotation. The sidecar
keeps each rubric's full prompt template and the judge model's sha256 with every score, so
a score can be reproduced later. Format (docs/analysis.md):

    format_version = 1
    session_id = "..."

    [[rubrics]]
    id = "alignment"
    sha256 = "..."          # of `template` (UTF-8)
    template = '''...'''

    [[batches]]             # one per rubric text × judge model
    rubric = "alignment"
    rubric_sha256 = "..."
    judge_model = "gemma-3-270m-it"
    judge_sha256 = "..."    # of the judge model file
    judge_backend = "llama.cpp"
    method = "logprob"      # or "greedy" on backends without next-token probabilities
    columns = ["condition", "probe", "sample", "score", "p_numbers", "time"]
    rows = [
      ["baseline", "wish", 0, 87.25, 0.93, "2026-01-01T12:00:00+00:00"],
      ["baseline", "wish", 1, nan, 0.12, "2026-01-01T12:00:02+00:00"],  # nan: no score
    ]

`p_numbers` is the probability mass on the answers 0..100; when it is below the judge's
threshold the score is `nan` (no score).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_tui._util.atomic import atomic_write_text, describe_os_error
from persona_tui._util.tables import Problems, TableReader
from persona_tui._util.textdata import DataFileError, loads_toml
from persona_tui._util.toml_text import render_string
from persona_tui.errors import SessionError
from persona_tui.session.index import sidecar_path as sidecar_path
from persona_tui.session.model import TrialKey

JUDGE_FORMAT_VERSION = 1
Identity = tuple[TrialKey, str, str]  # a trial, the rubric text's and the model's sha256


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Rubric:
    """A judge prompt template with `{question}` and `{answer}` placeholders."""

    id: str
    template: str
    description: str = ""

    @property
    def sha256(self) -> str:
        return text_sha256(self.template)

    def render(self, question: str, answer: str) -> str:
        return self.template.replace("{question}", question).replace("{answer}", answer)


@dataclass(frozen=True)
class Judgement:
    """One judge score of one trial's response under one rubric."""

    condition: str
    probe: str
    sample: int
    rubric: str
    rubric_sha256: str
    judge_model: str
    judge_sha256: str
    judge_backend: str
    method: str
    score: float | None  # None when p_numbers was below the threshold
    p_numbers: float
    time: str
    replicate: int = 0  # the trial's (session/model.py Trial.replicate)

    @property
    def key(self) -> TrialKey:
        return TrialKey(self.condition, self.probe, self.sample, self.replicate)

    @property
    def identity(self) -> Identity:
        """Judging the same trial with the same rubric text and model replaces the score."""
        return (self.key, self.rubric_sha256, self.judge_sha256)


@dataclass
class JudgeFile:
    """The contents of a sidecar: rubric templates by sha256, and the judgements."""

    session_id: str
    rubrics: dict[str, Rubric] = field(default_factory=dict)
    _by_identity: dict[Identity, Judgement] = field(default_factory=dict)

    @classmethod
    def of(
        cls, session_id: str, rubrics: dict[str, Rubric], judgements: Iterable[Judgement]
    ) -> JudgeFile:
        """A JudgeFile holding `judgements` (a later one replaces an earlier same identity)."""
        judge_file = cls(session_id, rubrics)
        for judgement in judgements:
            judge_file._by_identity[judgement.identity] = judgement
        return judge_file

    @property
    def judgements(self) -> list[Judgement]:
        """All judgements, oldest first (a replaced one moves to the end)."""
        return list(self._by_identity.values())

    def add(self, rubric: Rubric, judgement: Judgement) -> None:
        """Record a judgement, replacing an earlier one with the same trial, rubric and model."""
        self.rubrics[judgement.rubric_sha256] = rubric
        identity = judgement.identity
        self._by_identity.pop(identity, None)
        self._by_identity[identity] = judgement

    def done(self, rubric_sha256: str, judge_sha256: str) -> set[TrialKey]:
        """Trials already judged with this rubric text and judge model (to resume a run)."""
        return {
            j.key
            for j in self._by_identity.values()
            if j.rubric_sha256 == rubric_sha256 and j.judge_sha256 == judge_sha256
        }

    def latest(self) -> dict[tuple[TrialKey, str], Judgement]:
        """The latest judgement per trial and rubric id (what exports and reports use)."""
        out: dict[tuple[TrialKey, str], Judgement] = {}
        for judgement in sorted(self.judgements, key=lambda j: j.time):
            out[(judgement.key, judgement.rubric)] = judgement
        return out


_BATCH_KEYS = (
    "rubric",
    "rubric_sha256",
    "judge_model",
    "judge_sha256",
    "judge_backend",
    "method",
)
ROW_COLUMNS = ("condition", "probe", "sample", "score", "p_numbers", "time")
# The rows of a batch judging a replicated training study's trials add their replicate.
REPLICATE_COLUMNS = (*ROW_COLUMNS, "replicate")


def _batch_key(j: Judgement) -> tuple[str, ...]:
    return (j.rubric, j.rubric_sha256, j.judge_model, j.judge_sha256, j.judge_backend, j.method)


def _float(value: float) -> str:
    return "nan" if math.isnan(value) else repr(float(value))


def render_judge_file(judge_file: JudgeFile) -> str:
    """The sidecar as TOML: rubric templates, then one batch of compact rows per rubric
    text and judge model (20,000 scores read back in a fraction of a second)."""
    out = [
        f"format_version = {JUDGE_FORMAT_VERSION}",
        f"session_id = {render_string(judge_file.session_id)}",
        "",
    ]
    for sha, rubric in judge_file.rubrics.items():
        out += [
            "[[rubrics]]",
            f"id = {render_string(rubric.id)}",
            f"sha256 = {render_string(sha)}",
            f"description = {render_string(rubric.description)}",
            f"template = {render_string(rubric.template)}",
            "",
        ]
    batches: dict[tuple[str, ...], list[Judgement]] = {}
    for judgement in judge_file.judgements:
        batches.setdefault(_batch_key(judgement), []).append(judgement)
    for key, rows in batches.items():
        out.append("[[batches]]")
        out += [
            f"{name} = {render_string(value)}" for name, value in zip(_BATCH_KEYS, key, strict=True)
        ]
        replicated = any(j.replicate for j in rows)
        columns = REPLICATE_COLUMNS if replicated else ROW_COLUMNS
        out.append("columns = [" + ", ".join(f'"{c}"' for c in columns) + "]")
        out.append("rows = [")
        out += [
            f"  [{render_string(j.condition)}, {render_string(j.probe)}, {j.sample}, "
            f"{_float(math.nan if j.score is None else j.score)}, {_float(j.p_numbers)}, "
            f"{render_string(j.time)}{f', {j.replicate}' if replicated else ''}],"
            for j in rows
        ]
        out += ["]", ""]
    return "\n".join(out)


def save_judge_file(session_path: Path, judge_file: JudgeFile) -> Path:
    """Write the sidecar atomically; raise SessionError naming the file on failure."""
    path = sidecar_path(session_path)
    try:
        atomic_write_text(path, render_judge_file(judge_file))
    except OSError as error:
        raise SessionError(
            f"{path}: cannot write the judge scores: {describe_os_error(error)}"
        ) from None
    return path


def load_judge_file(session_path: Path, session_id: str) -> JudgeFile:
    """Read the sidecar of a session; an empty JudgeFile when there is none."""
    path = sidecar_path(session_path)
    try:
        data = loads_toml(path.read_text(encoding="utf-8"), path)
    except FileNotFoundError:
        return JudgeFile(session_id)
    except (OSError, UnicodeDecodeError) as error:
        raise SessionError(f"{path}: cannot read the judge scores: {error}") from None
    except DataFileError as error:
        raise SessionError(
            f"{error.where}: not valid TOML ({error.problem}); "
            "delete it to re-run `persona-tui judge`"
        ) from None
    try:
        return _parse(data, session_id, path)
    except SessionError as error:
        raise SessionError(
            f"{error}; malformed judge file: delete it to re-run `persona-tui judge`"
        ) from None


_ROW_TYPES: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("a string", (str,)),  # condition
    ("a string", (str,)),  # probe
    ("an integer", (int,)),  # sample
    ("a number", (int, float)),  # score (nan: no score)
    ("a number", (int, float)),  # p_numbers
    ("a string", (str,)),  # time
    ("an integer", (int,)),  # replicate (REPLICATE_COLUMNS only)
)


def _string(t: TableReader, key: str) -> str:
    value = t.value(key, "a string", (str,), required=True)
    return value if isinstance(value, str) else ""


def _parse(data: dict[str, Any], session_id: str, path: Path) -> JudgeFile:
    """Validate a parsed sidecar (SessionError at the first problem); unknown keys are ignored."""
    top = TableReader(Problems(path, fail_fast=SessionError), data)
    version = top.value("format_version", "an integer", (int,), required=True)
    if version != JUDGE_FORMAT_VERSION:
        top.report("format_version", f"{version!r} is not {JUDGE_FORMAT_VERSION}")
    stored_id = _string(top, "session_id")
    if stored_id != session_id:
        top.report("session_id", f"it belongs to session {stored_id!r}, not {session_id!r}")
    rubrics = {
        _string(r, "sha256"): Rubric(
            _string(r, "id"), _string(r, "template"), r.string("description")
        )
        for r in top.each_table("rubrics", None, what="a rubric")
    }
    return JudgeFile.of(session_id, rubrics, _rows(top))


def _rows(top: TableReader) -> Iterator[Judgement]:
    for batch in top.each_table("batches", None, what="a batch"):
        rubric, rubric_sha256, model, model_sha256, backend, method = (
            _string(batch, name) for name in _BATCH_KEYS
        )
        columns = batch.value("columns", "an array of column names", (list,))
        names = ROW_COLUMNS if columns is None else tuple(columns)
        if names not in (ROW_COLUMNS, REPLICATE_COLUMNS):
            batch.report("columns", f"unexpected columns {columns!r}")
        rows = batch.value("rows", "an array of rows", (list,), required=True) or []
        for index, row in enumerate(rows):
            if not isinstance(row, list):
                batch.wrong_type(("rows", index), "an array (one row)", row)
                continue
            if len(row) != len(names):
                expected = f"{len(names)} values ({', '.join(names)})"
                batch.report(("rows", index), f"expected {expected}, got {len(row)}")
                continue
            types = _ROW_TYPES[: len(names)]
            for column, (value, (expected, kinds)) in enumerate(zip(row, types, strict=True)):
                if isinstance(value, bool) or not isinstance(value, kinds):
                    batch.wrong_type(("rows", index, column), expected, value)
            condition, probe, sample, score, p_numbers, time = row[:6]
            yield Judgement(
                condition=condition,
                probe=probe,
                sample=sample,
                rubric=rubric,
                rubric_sha256=rubric_sha256,
                judge_model=model,
                judge_sha256=model_sha256,
                judge_backend=backend,
                method=method,
                score=None if math.isnan(score) else float(score),
                p_numbers=float(p_numbers),
                time=time,
                replicate=row[6] if len(row) > 6 else 0,
            )
