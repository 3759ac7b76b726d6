"""Sessions as Inspect AI logs (`.eval`), written through Inspect's own Python API.

One log per condition of a session (task = scenario id, `task_args.condition`, run_id =
session id), one sample per probe, epoch = sample index + 1; human annotations, judge scores
and the reproducibility record come along; Inspect recomputes the metrics from the scorer
definitions in the log header. Sessions imported from Inspect logs (`inspect_import`) go back
instead as a copy of each original log with the annotations added by `edit_score`, the
annotator as the edit's author. The mapping, field by field: docs/export-format.md.

inspect_ai is imported inside the functions (the `inspect` extra); blind mode cannot survive
an export, since each log is one condition and its messages show the framing.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_tui.analysis.inspect_common import (
    EXTRA_LOGS,
    METRICS,
    ExportedLog,
    annotator_names,
    human_scores,
    judge_score_name,
    label_ids,
    require_inspect,
    scenario_or_none,
    write_log,
)
from persona_tui.errors import PersonaError
from persona_tui.run.prompts import conversation
from persona_tui.scenario.model import Scenario
from persona_tui.scoring.judgements import JudgeFile, Judgement
from persona_tui.session.index import reproducibility_data
from persona_tui.session.model import Annotation, OptionCell, Session, Trial

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog, EvalSample
    from inspect_ai.model import ChatMessage, StopReason
    from inspect_ai.scorer import Score

PURPOSE = "exporting Inspect logs"
_STOP_REASONS: dict[str, StopReason] = {
    "stop": "stop",
    "length": "max_tokens",
    "cancelled": "unknown",
}


def export_inspect(
    paths: Sequence[Path], out_dir: Path, *, use_cache: bool = True
) -> list[ExportedLog]:
    """Write the sessions at `paths` as Inspect logs into `out_dir` (created if needed)."""
    from persona_tui.analysis.cache import load_for_analysis
    from persona_tui.analysis.inspect_edits import export_onto_originals

    require_inspect(PURPOSE)
    if not paths:
        raise PersonaError("no session files given")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PersonaError(f"{out_dir}: cannot create the folder: {error.strerror}") from None
    written: list[ExportedLog] = []
    for path in paths:
        session, judge_file = load_for_analysis(Path(path), use_cache)
        if EXTRA_LOGS in session.header.model.extra:
            written += export_onto_originals(session, out_dir)
        else:
            written += _export_session(session, judge_file, out_dir)
    return written


def session_eval_logs(session: Session, judge_file: JudgeFile) -> list[EvalLog]:
    """The Inspect logs of a session, one per condition (in plan order), metrics computed."""
    require_inspect(PURPOSE)
    scenario = scenario_or_none(session)
    names = annotator_names(a.annotator for t in session.trials for a in t.annotations)
    labels = label_ids(session, scenario)
    judged = judge_file.latest()
    logs = []
    for condition in _conditions(session):
        trials = [t for t in session.trials if t.condition == condition]
        cells = {c.probe: c for c in session.option_cells if c.condition == condition}
        logs.append(
            _condition_log(session, scenario, condition, trials, cells, names, labels, judged)
        )
    return logs


# ---------------------------------------------------------------------------- one session


def _export_session(session: Session, judge_file: JudgeFile, out_dir: Path) -> list[ExportedLog]:
    written = []
    for log in session_eval_logs(session, judge_file):
        condition = str(log.eval.task_args["condition"])
        target = out_dir / f"{_file_stem(session.header.id)}_{_file_stem(condition)}.eval"
        write_log(log, target)
        written.append(ExportedLog(target, session.header.id, condition, len(log.samples or [])))
    return written


def _file_stem(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip(".") or "log"


def _conditions(session: Session) -> list[str]:
    seen = dict.fromkeys(session.header.plan.conditions)
    for trial in session.trials:
        seen.setdefault(trial.condition)
    for cell in session.option_cells:
        seen.setdefault(cell.condition)
    return list(seen)


def _probe_order(session: Session) -> dict[str, int]:
    order = dict.fromkeys(session.header.plan.probes)
    for trial in session.trials:
        order.setdefault(trial.probe)
    return {probe: index for index, probe in enumerate(order)}


def _condition_log(
    session: Session,
    scenario: Scenario | None,
    condition: str,
    trials: list[Trial],
    cells: dict[str, OptionCell],
    names: dict[str, str],
    labels: list[str],
    judged: dict[tuple[tuple[str, str, int], str], Judgement],
) -> EvalLog:
    from inspect_ai.log import EvalLog, EvalStats, recompute_metrics

    header = session.header
    order = _probe_order(session)
    trials = sorted(trials, key=lambda t: (order.get(t.probe, len(order)), t.sample))
    samples = [
        _sample(session, scenario, trial, cells.get(trial.probe), names, labels, judged)
        for trial in trials
    ]
    sampled = {t.probe for t in trials}
    unsampled = [_option_cell_data(c) for p, c in cells.items() if p not in sampled]
    usage = _usage(header.model.name, trials)
    ends = [_end(t) for t in trials]
    log = EvalLog(
        status="success" if header.status == "complete" else "started",
        eval=_spec(session, scenario, condition, samples, unsampled),
        stats=EvalStats(
            started_at=header.created,
            completed_at=max(ends) if ends and header.status == "complete" else "",
            model_usage={header.model.name: usage} if usage is not None else {},
        ),
        samples=samples,
    )
    recompute_metrics(log)
    return log


def _spec(
    session: Session,
    scenario: Scenario | None,
    condition: str,
    samples: list[EvalSample],
    unsampled_cells: list[dict[str, Any]],
) -> Any:
    from inspect_ai.log import EvalConfig, EvalDataset, EvalSpec
    from inspect_ai.model import GenerateConfig

    header = session.header
    model = header.model
    sampling = header.sampling
    label = condition
    if scenario is not None and any(c.id == condition for c in scenario.conditions):
        label = scenario.condition(condition).label or condition
    record = reproducibility_data(session)
    record["scenario"]["source"] = header.scenario_source
    record["model"]["extra"] = dict(model.extra)  # eval_block and other engine parameters
    record["chat_template"] = header.chat_template
    record["sampling"] = asdict(sampling)
    metadata: dict[str, Any] = {
        "persona_tui": record,
        "condition": condition,
        "condition_label": label,
        "blind_note": "Blind annotation does not survive an export: each log is one condition.",
    }
    if unsampled_cells:
        metadata["option_cells"] = unsampled_cells  # likelihood probes without a trial
    probes = list(_probe_order(session))
    scorers = _scorer_definitions(samples)
    # EvalScorer/EvalMetricDefinition are not exported by inspect_ai.log: pass the
    # definitions as data and let pydantic build them (the documented log schema).
    typed_elsewhere: dict[str, Any] = {"scorers": scorers} if scorers else {}
    return EvalSpec(
        eval_id=_short_id("eval", header.id, condition),
        run_id=header.id,
        created=header.created,
        task=header.scenario_id,
        task_id=_short_id("task", header.scenario_sha256),
        task_version=0,
        task_file=header.scenario_path,
        task_display_name=scenario.title if scenario else header.scenario_id,
        task_description=f"{header.scenario_id} · {label}",
        task_args={"condition": condition},
        task_attribs={"condition_label": label},
        tags=["persona-tui"],
        dataset=EvalDataset(
            name=header.scenario_id,
            location=header.scenario_path,
            samples=len(probes),
            sample_ids=probes,
            shuffled=False,
        ),
        model=f"{model.backend}/{model.name}",
        model_generate_config=GenerateConfig(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            max_tokens=sampling.max_tokens,
            stop_seqs=list(header.plan.stop) or None,
            seed=header.plan.seed,
        ),
        model_args={
            "path": model.path,
            "sha256": model.sha256,
            "size_bytes": model.size_bytes,
            "min_p": sampling.min_p,
            "repeat_penalty": sampling.repeat_penalty,
            "prompt_mode": header.plan.prompt_mode,
        },
        config=EvalConfig(epochs=header.plan.samples),
        packages={"persona-tui": header.app_version, model.backend: model.backend_version},
        metadata=metadata,
        **typed_elsewhere,
    )


def _scorer_definitions(samples: list[EvalSample]) -> list[dict[str, Any]]:
    """One scorer per score name present, in first-appearance order, with mean and stderr."""
    names: dict[str, None] = {}
    for sample in samples:
        for name in sample.scores or {}:
            names.setdefault(name)
    return [{"name": name, "metrics": list(METRICS)} for name in names]


def _short_id(*parts: str) -> str:
    """A stable 22-character id (Inspect's ids have that length), so re-exports are identical."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:22]


# ---------------------------------------------------------------------------- samples


def _sample(
    session: Session,
    scenario: Scenario | None,
    trial: Trial,
    cell: OptionCell | None,
    names: dict[str, str],
    labels: list[str],
    judged: dict[tuple[tuple[str, str, int], str], Judgement],
) -> EvalSample:
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatCompletionChoice, ChatMessageAssistant, ModelOutput

    header = session.header
    model_name = header.model.name
    sent = _messages_sent(scenario, trial)
    answer = ChatMessageAssistant(content=trial.response, model=model_name, source="generate")
    usage = _usage(model_name, [trial])
    metadata: dict[str, Any] = {
        "seed": trial.seed,
        "prompt": trial.prompt,
        "prompt_mode": header.plan.prompt_mode,
        "finish_reason": trial.finish_reason,
        "condition": trial.condition,
        "probe": trial.probe,
        "sample": trial.sample,
        "started": trial.started,
        "seconds": trial.seconds,
        "annotations": [_annotation_data(a) for a in trial.annotations],
    }
    if cell is not None:
        metadata["options"] = _option_cell_data(cell)
    scores = dict(_human_scores(trial.annotations, names, labels))
    key = (trial.condition, trial.probe, trial.sample)
    for (trial_key, rubric), judgement in judged.items():
        if trial_key == key:
            scores[judge_score_name(rubric)] = _judge_score(judgement)
    return EvalSample(
        id=trial.probe,
        epoch=trial.sample + 1,
        input=sent,
        target="",
        messages=[*sent, answer],
        output=ModelOutput(
            model=model_name,
            choices=[
                ChatCompletionChoice(
                    message=answer, stop_reason=_STOP_REASONS.get(trial.finish_reason, "unknown")
                )
            ],
            completion=trial.response,
            usage=usage,
            time=trial.seconds,
        ),
        scores=scores or None,
        metadata=metadata,
        model_usage={model_name: usage} if usage is not None else {},
        started_at=trial.started,
        completed_at=_end(trial),
        total_time=trial.seconds,
        working_time=trial.seconds,
        uuid=_short_id("sample", header.id, trial.condition, trial.probe, str(trial.sample)),
    )


def _messages_sent(scenario: Scenario | None, trial: Trial) -> list[ChatMessage]:
    """The conversation the prompt was rendered from: framing, demonstrations, probe turns.

    Without a valid scenario copy, the prompt exactly as sent, as one user message.
    """
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    if scenario is None or not _has(scenario, trial):
        return [ChatMessageUser(content=trial.prompt)]
    probe = scenario.probe(trial.probe)
    condition = scenario.condition(trial.condition)
    out: list[ChatMessage] = []
    for message in conversation(condition, probe.turns, trial.turn_responses):
        if message.role == "system":
            out.append(ChatMessageSystem(content=message.content))
        elif message.role == "user":
            out.append(ChatMessageUser(content=message.content))
        else:
            out.append(ChatMessageAssistant(content=message.content))
    return out


def _has(scenario: Scenario, trial: Trial) -> bool:
    return any(c.id == trial.condition for c in scenario.conditions) and any(
        p.id == trial.probe and len(p.turns) == len(trial.turn_responses) + 1
        for p in scenario.probes
    )


def _usage(model_name: str, trials: Iterable[Trial]) -> Any:
    from inspect_ai.model import ModelUsage

    trials = list(trials)
    if not trials:
        return None
    prompt = sum(t.prompt_tokens for t in trials)
    completion = sum(t.completion_tokens for t in trials)
    return ModelUsage(
        input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion
    )


def _end(trial: Trial) -> str:
    try:
        start = datetime.fromisoformat(trial.started)
    except ValueError:
        return trial.started
    return (start + timedelta(seconds=trial.seconds)).isoformat()


def _annotation_data(annotation: Annotation) -> dict[str, Any]:
    return {
        "annotator": annotation.annotator,
        "time": annotation.time,
        "label": annotation.label,
        "scales": dict(annotation.scores),
        "note": annotation.note,
        "blind": annotation.blind_seed is not None,
        "blind_seed": annotation.blind_seed,
    }


def _option_cell_data(cell: OptionCell) -> dict[str, Any]:
    return {
        "condition": cell.condition,
        "probe": cell.probe,
        "prompt": cell.prompt,
        "prompt_tokens": cell.prompt_tokens,
        "seconds": cell.seconds,
        "options": [
            {
                "id": o.id,
                "label": o.label,
                "text": o.text,
                "logprob": o.logprob,
                "mean_logprob": o.mean_logprob,
                "n_tokens": o.n_tokens,
                "token_logprobs": list(o.token_logprobs),
            }
            for o in cell.options
        ],
    }


# ---------------------------------------------------------------------------- scores


def _human_scores(
    annotations: Iterable[Annotation], names: dict[str, str], labels: Sequence[str]
) -> Iterator[tuple[str, Score]]:
    from inspect_ai.scorer import Score

    for annotation in annotations:
        for s in human_scores(annotation, names, labels):
            yield (
                s.name,
                Score(
                    value=s.value,
                    answer=s.answer,
                    explanation=s.explanation,
                    metadata=dict(s.metadata),
                ),
            )


def _judge_score(judgement: Judgement) -> Score:
    from inspect_ai.scorer import Score

    explanation = None
    if judgement.score is None:
        explanation = (
            f"no score: only {judgement.p_numbers:.3f} of the judge's probability fell on numbers"
        )
    return Score(
        value=math.nan if judgement.score is None else judgement.score,
        explanation=explanation,
        metadata={
            "rubric": judgement.rubric,
            "rubric_sha256": judgement.rubric_sha256,
            "judge_model": judgement.judge_model,
            "judge_sha256": judgement.judge_sha256,
            "judge_backend": judgement.judge_backend,
            "method": judgement.method,
            "p_numbers": judgement.p_numbers,
            "time": judgement.time,
        },
    )
