"""Sessions as flat records: one per trial per annotation, the unit of export and statistics.

`load_dataset` reads session files (and their judge sidecars), joins each trial with its
condition label and probe text from the scenario copy stored in the session, applies rule
scorers, and returns the records with the schema (conditions, probes, labels, scales) that
the statistics need. Scored answer options (likelihood probes) become `OptionRow`s, one per
condition × probe × option. `load_sessions` is the small notebook API on top of it, and
`dataset_of` builds a Dataset from Session objects already in memory.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_tui.analysis.projection_rows import ProjectionRow, projection_rows
from persona_tui.errors import PersonaError, ScenarioError
from persona_tui.scenario.model import Label, Scale, Scenario
from persona_tui.scenario.rules import RuleSet, merge_rules, parse_rules
from persona_tui.scoring.judgements import JudgeFile
from persona_tui.session.as_run import scenario_as_run, scenario_copy_name
from persona_tui.session.model import (
    Annotation,
    OptionCell,
    OptionScore,
    Session,
    Trial,
    TrialKey,
)

# A trial across merged sessions: (session, condition, probe, sample, replicate).
TrialId = tuple[str, str, str, int, int]


@dataclass(frozen=True)
class JudgeScore:
    """A judge's 0-100 score of a response (None when too little mass fell on numbers)."""

    score: float | None
    p_numbers: float
    judge_model: str
    judge_sha256: str


@dataclass(frozen=True)
class Record:
    """One trial with one of its annotations (or with none, for an unannotated trial)."""

    session_id: str
    session_file: str
    scenario_id: str
    scenario_sha256: str
    model_name: str
    model_sha256: str
    backend: str
    backend_version: str
    condition: str
    condition_label: str
    probe: str
    probe_text: str
    sample: int
    seed: int
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repeat_penalty: float
    max_tokens: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str
    response: str
    annotator: str = ""  # "" for an unannotated trial
    annotation_time: str = ""
    label: str = ""
    scales: Mapping[str, int] = field(default_factory=dict)
    note: str = ""
    judge: Mapping[str, JudgeScore] = field(default_factory=dict)  # by rubric id
    rule_label: str = ""
    rule_match: str = ""
    blind_seed: int | None = None  # the annotation's blind-mode shuffle seed; None: not blind
    # The training run (replicate 1..N) of a replicated adapter condition; 0 otherwise.
    replicate: int = 0

    @property
    def blind(self) -> bool | None:
        """Whether the annotation was made blind (conditions hidden); None for no annotation."""
        if not self.annotator:
            return None
        return self.blind_seed is not None

    @property
    def trial_id(self) -> TrialId:
        """Identifies the trial across merged sessions: (session, condition, probe, sample,
        replicate)."""
        return (self.session_id, self.condition, self.probe, self.sample, self.replicate)


@dataclass(frozen=True)
class OptionRow:
    """One scored answer option of one (condition, probe) cell of a session."""

    session_id: str
    session_file: str
    scenario_id: str
    model_name: str
    model_sha256: str
    condition: str
    probe: str
    option: str
    label: str
    text: str  # the continuation as scored
    logprob: float  # natural log, summed over the option's tokens
    n_tokens: int
    prompt_tokens: int
    prompt: str  # exactly the text the option was scored after
    replicate: int = 0  # the training run of a replicated adapter condition; 0 otherwise

    @property
    def mean_logprob(self) -> float:
        return self.logprob / self.n_tokens if self.n_tokens else 0.0


@dataclass(frozen=True)
class SessionSummary:
    id: str
    path: str
    scenario_id: str
    scenario_sha256: str
    model_name: str
    model_sha256: str
    status: str
    trials: int
    planned: int
    # Conditions that ran with a LoRA adapter (a training study): each is one training run.
    adapter_conditions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConditionInfo:
    id: str
    label: str


@dataclass(frozen=True)
class ProbeInfo:
    id: str
    text: str


@dataclass(frozen=True)
class Dataset:
    """Records of one or more sessions with the union of their schemas, in scenario order."""

    sessions: tuple[SessionSummary, ...]
    records: tuple[Record, ...]
    conditions: tuple[ConditionInfo, ...]
    probes: tuple[ProbeInfo, ...]
    labels: tuple[Label, ...]
    scales: tuple[Scale, ...]
    rubrics: tuple[str, ...]
    rule_labels: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    options: tuple[OptionRow, ...] = ()  # scored answer options, in session then cell order
    projections: tuple[ProjectionRow, ...] = ()  # trait projections, in session then file order

    @property
    def bad_labels(self) -> tuple[str, ...]:
        return tuple(label.id for label in self.labels if label.bad)

    @property
    def annotators(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.annotator for r in self.records if r.annotator))

    @functools.cached_property
    def by_trial(self) -> dict[TrialId, list[Record]]:
        """The records grouped by trial (session, condition, probe, sample, replicate)."""
        grouped: dict[TrialId, list[Record]] = {}
        for record in self.records:
            key = record.trial_id
            rows = grouped.get(key)
            if rows is None:
                grouped[key] = [record]
            else:
                rows.append(record)
        return grouped


def load_sessions(
    paths: Iterable[Path | str], rules: RuleSet | None = None, *, use_cache: bool = True
) -> list[Record]:
    """Read session files into records (one per trial per annotation), for notebooks."""
    return list(load_dataset([Path(p) for p in paths], rules, use_cache=use_cache).records)


def load_dataset(
    paths: Sequence[Path], rules: RuleSet | None = None, *, use_cache: bool = True
) -> Dataset:
    """Read sessions and their judge sidecars into a Dataset; raise SessionError on bad files.

    `rules` (e.g. from `--rules FILE`) take priority over rules in each scenario's source.
    With `use_cache`, unchanged files are read from the analysis cache (analysis/cache.py).
    """
    from persona_tui.analysis.cache import load_for_analysis

    if not paths:
        raise PersonaError("no session files given")
    builder = _Builder(rules or RuleSet())
    for path in paths:
        session, judge_file = load_for_analysis(Path(path), use_cache)
        builder.add(session, judge_file)
    return builder.build()


def dataset_of(sessions: Iterable[Session], rules: RuleSet | None = None) -> Dataset:
    """A Dataset of sessions already in memory (no judge scores), e.g. built in a test."""
    builder = _Builder(rules or RuleSet())
    for session in sessions:
        builder.add(session, JudgeFile.of(session.header.id, {}, ()))
    return builder.build()


class _Builder:
    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.records: list[Record] = []
        self.sessions: list[SessionSummary] = []
        self.conditions: dict[str, str] = {}
        self.probes: dict[str, str] = {}
        self.labels: dict[str, Label] = {}
        self.scales: dict[str, Scale] = {}
        self.rubrics: dict[str, None] = {}
        self.rule_labels: dict[str, None] = {}
        self.warnings: list[str] = []
        self.seen_ids: set[str] = set()
        self.options: list[OptionRow] = []
        self.projections: list[ProjectionRow] = []

    def add(self, session: Session, judge_file: JudgeFile) -> None:
        header = session.header
        if header.id in self.seen_ids:
            self.warnings.append(f"{session.path}: session {header.id} given twice; read once")
            return
        self.seen_ids.add(header.id)
        scenario = self._scenario(session)
        rules = self.rules
        if scenario is not None:
            for condition in scenario.conditions:
                self.conditions.setdefault(condition.id, condition.label)
            for probe in scenario.probes:
                self.probes.setdefault(probe.id, probe.text)
            for label in scenario.annotation.labels:
                self.labels.setdefault(label.id, label)
            for scale in scenario.annotation.scales:
                self.scales.setdefault(scale.id, scale)
            rules = merge_rules([self.rules, _scenario_rules(session)])
        for rule_label in rules.labels:
            self.rule_labels.setdefault(rule_label, None)
        judged: dict[TrialKey, dict[str, JudgeScore]] = {}
        latest = judge_file.latest()
        used = {rubric for _, rubric in latest}
        for rubric_info in judge_file.rubrics.values():  # rubric order: first judged first
            if rubric_info.id in used:
                self.rubrics.setdefault(rubric_info.id, None)
        for (key, rubric), j in latest.items():
            self.rubrics.setdefault(rubric, None)
            judged.setdefault(key, {})[rubric] = JudgeScore(
                j.score, j.p_numbers, j.judge_model, j.judge_sha256
            )
        base = _session_fields(session)
        for trial in session.trials:
            self.conditions.setdefault(trial.condition, trial.condition)
            self.probes.setdefault(trial.probe, "")
            judge = judged.get(trial.key, {})
            match = rules.classify(trial.response) if rules else None
            trial_fields = _trial_fields(trial, self.conditions, self.probes)
            common = {
                **base,
                **trial_fields,
                "judge": judge,
                "rule_label": match.label if match else "",
                "rule_match": match.matched if match else "",
            }
            if not trial.annotations:
                self.records.append(Record(**common))
            for annotation in trial.annotations:
                self._note_annotation(annotation)
                self.records.append(Record(**common, **_annotation_fields(annotation)))
        for cell in session.option_cells:
            self.conditions.setdefault(cell.condition, cell.condition)
            self.probes.setdefault(cell.probe, "")
            for option in cell.options:
                if option.label not in self.labels:
                    self.labels[option.label] = Label(option.label, "")
                self.options.append(_option_row(session, cell, option))
        self.projections += projection_rows(session)
        self.sessions.append(
            SessionSummary(
                id=header.id,
                path=str(session.path),
                scenario_id=header.scenario_id,
                scenario_sha256=header.scenario_sha256,
                model_name=header.model.name,
                model_sha256=header.model.sha256,
                status=header.status,
                trials=len(session.trials),
                planned=header.plan.total,
                adapter_conditions=tuple(dict.fromkeys(a.condition for a in header.adapters)),
            )
        )

    def _note_annotation(self, annotation: Annotation) -> None:
        if annotation.label and annotation.label not in self.labels:
            self.labels[annotation.label] = Label(annotation.label, "")
        for scale_id in annotation.scores:
            if scale_id not in self.scales:
                self.scales[scale_id] = Scale(scale_id, 0, 0)

    def _scenario(self, session: Session) -> Scenario | None:
        try:
            return scenario_as_run(session, as_copy=True)
        except ScenarioError as error:
            self.warnings.append(
                f"{session.path}: the scenario copy does not validate ({error.problems[0]}); "
                "condition labels and probe texts are missing from the analysis"
            )
            return None

    def build(self) -> Dataset:
        if len({s.scenario_id for s in self.sessions}) > 1:
            ids = ", ".join(sorted({s.scenario_id for s in self.sessions}))
            self.warnings.append(
                f"sessions of different scenarios ({ids}) are merged by condition and probe id"
            )
        return Dataset(
            sessions=tuple(self.sessions),
            records=tuple(self.records),
            conditions=tuple(ConditionInfo(k, v) for k, v in self.conditions.items()),
            probes=tuple(ProbeInfo(k, v) for k, v in self.probes.items()),
            labels=tuple(self.labels.values()),
            scales=tuple(self.scales.values()),
            rubrics=tuple(self.rubrics),
            rule_labels=tuple(self.rule_labels),
            warnings=tuple(self.warnings),
            options=tuple(self.options),
            projections=tuple(self.projections),
        )


def _option_row(session: Session, cell: OptionCell, option: OptionScore) -> OptionRow:
    header = session.header
    return OptionRow(
        session_id=header.id,
        session_file=str(session.path),
        scenario_id=header.scenario_id,
        model_name=header.model.name,
        model_sha256=header.model.sha256,
        condition=cell.condition,
        probe=cell.probe,
        option=option.id,
        label=option.label,
        text=option.text,
        logprob=option.logprob,
        n_tokens=option.n_tokens,
        prompt_tokens=cell.prompt_tokens,
        prompt=cell.prompt,
        replicate=cell.replicate,
    )


def _scenario_rules(session: Session) -> RuleSet:
    """Rules declared as `[[rules]]` in the scenario copy (none when absent or invalid)."""
    source = session.header.scenario_source
    if "rules" not in source:
        return RuleSet()
    try:
        return parse_rules(source, scenario_copy_name(session.path), lenient=True)
    except ScenarioError:
        return RuleSet()


def _session_fields(session: Session) -> dict[str, Any]:
    header = session.header
    sampling = header.sampling
    return {
        "session_id": header.id,
        "session_file": str(session.path),
        "scenario_id": header.scenario_id,
        "scenario_sha256": header.scenario_sha256,
        "model_name": header.model.name,
        "model_sha256": header.model.sha256,
        "backend": header.model.backend,
        "backend_version": header.model.backend_version,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "min_p": sampling.min_p,
        "repeat_penalty": sampling.repeat_penalty,
        "max_tokens": sampling.max_tokens,
    }


def _trial_fields(
    trial: Trial, conditions: Mapping[str, str], probes: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "condition": trial.condition,
        "condition_label": conditions.get(trial.condition, trial.condition),
        "probe": trial.probe,
        "probe_text": probes.get(trial.probe, ""),
        "sample": trial.sample,
        "replicate": trial.replicate,
        "seed": trial.seed,
        "prompt_tokens": trial.prompt_tokens,
        "completion_tokens": trial.completion_tokens,
        "seconds": trial.seconds,
        "finish_reason": trial.finish_reason,
        "response": trial.response,
    }


def _annotation_fields(annotation: Annotation) -> dict[str, Any]:
    return {
        "annotator": annotation.annotator,
        "annotation_time": annotation.time,
        "label": annotation.label,
        "scales": dict(annotation.scores),
        "note": annotation.note,
        "blind_seed": annotation.blind_seed,
    }
