"""Sessions as Inspect AI logs (`.eval`), written through Inspect's own Python API.

One log per arm of a session: per condition, and in a replicated training study per training
run of it ("learns r2": `task_args.replicate`, the file `<session>_learns-r2.eval`), so
samples never collide (task = scenario id, `task_args.condition`, run_id = session id), one
sample per probe, epoch = sample index + 1; human annotations, judge scores
and the reproducibility record come along; Inspect recomputes the metrics from the scorer
definitions in the log header. Sessions imported from Inspect logs (`inspect_import`) go back
instead as a copy of each original log with the annotations added by `edit_score`, the
annotator as the edit's author. Each trial becomes a sample in `inspect_samples`; here the
logs, their header (`EvalSpec`) and their stats. The mapping, field by field:
docs/export-format.md.

inspect_ai is imported inside the functions (the `inspect` extra); blind mode cannot survive
an export, since each log is one condition and its messages show the framing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_tui.analysis.inspect_common import (
    EXTRA_LOGS,
    METRICS,
    ExportedLog,
    annotator_names,
    label_ids,
    require_inspect,
    scenario_or_none,
    write_log,
)
from persona_tui.analysis.inspect_samples import (
    eval_sample,
    model_usage,
    option_cell_data,
    short_id,
    trial_end,
)
from persona_tui.errors import PersonaError
from persona_tui.scenario.model import Scenario
from persona_tui.scoring.judgements import JudgeFile, Judgement
from persona_tui.session.index import reproducibility_data
from persona_tui.session.model import Arm, OptionCell, Session, Trial, TrialKey

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog, EvalSample

PURPOSE = "exporting Inspect logs"


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
    """The Inspect logs of a session, one per arm (condition, training run; in plan order),
    metrics computed."""
    require_inspect(PURPOSE)
    scenario = scenario_or_none(session)
    names = annotator_names(a.annotator for t in session.trials for a in t.annotations)
    labels = label_ids(session, scenario)
    judged = judge_file.latest()
    logs = []
    for arm in _arms(session):
        trials = [t for t in session.trials if t.arm == arm]
        cells = {c.probe: c for c in session.option_cells if c.arm == arm}
        logs.append(_arm_log(session, scenario, arm, trials, cells, names, labels, judged))
    return logs


# ---------------------------------------------------------------------------- one session


def _export_session(session: Session, judge_file: JudgeFile, out_dir: Path) -> list[ExportedLog]:
    written = []
    for log in session_eval_logs(session, judge_file):
        arm = Arm(str(log.eval.task_args["condition"]), int(log.eval.task_args.get("replicate", 0)))
        stem = _file_stem(arm.condition) + (f"-r{arm.replicate}" if arm.replicate else "")
        target = out_dir / f"{_file_stem(session.header.id)}_{stem}.eval"
        write_log(log, target)
        written.append(ExportedLog(target, session.header.id, arm.name, len(log.samples or [])))
    return written


def _file_stem(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip(".") or "log"


def _arms(session: Session) -> list[Arm]:
    seen = dict.fromkeys(session.header.plan.arms)
    for trial in session.trials:
        seen.setdefault(trial.arm)
    for cell in session.option_cells:
        seen.setdefault(cell.arm)
    return list(seen)


def _probe_order(session: Session) -> dict[str, int]:
    order = dict.fromkeys(session.header.plan.probes)
    for trial in session.trials:
        order.setdefault(trial.probe)
    return {probe: index for index, probe in enumerate(order)}


def _arm_log(
    session: Session,
    scenario: Scenario | None,
    arm: Arm,
    trials: list[Trial],
    cells: dict[str, OptionCell],
    names: dict[str, str],
    labels: list[str],
    judged: dict[tuple[TrialKey, str], Judgement],
) -> EvalLog:
    from inspect_ai.log import EvalLog, EvalStats, recompute_metrics

    header = session.header
    order = _probe_order(session)
    trials = sorted(trials, key=lambda t: (order.get(t.probe, len(order)), t.sample))
    samples = [
        eval_sample(session, scenario, trial, cells.get(trial.probe), names, labels, judged)
        for trial in trials
    ]
    sampled = {t.probe for t in trials}
    unsampled = [option_cell_data(c) for p, c in cells.items() if p not in sampled]
    usage = model_usage(header.model.name, trials)
    ends = [trial_end(t) for t in trials]
    log = EvalLog(
        status="success" if header.status == "complete" else "started",
        eval=_spec(session, scenario, arm, samples, unsampled),
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
    arm: Arm,
    samples: list[EvalSample],
    unsampled_cells: list[dict[str, Any]],
) -> Any:
    from inspect_ai.log import EvalConfig, EvalDataset, EvalSpec
    from inspect_ai.model import GenerateConfig

    header = session.header
    model = header.model
    sampling = header.sampling
    condition = arm.condition
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
    # A training run of a replicated study (its own log: the runs' samples share ids).
    run: dict[str, Any] = {"replicate": arm.replicate} if arm.replicate else {}
    metadata.update(run)
    if unsampled_cells:
        metadata["option_cells"] = unsampled_cells  # likelihood probes without a trial
    probes = list(_probe_order(session))
    scorers = _scorer_definitions(samples)
    # EvalScorer/EvalMetricDefinition are not exported by inspect_ai.log: pass the
    # definitions as data and let pydantic build them (the documented log schema).
    typed_elsewhere: dict[str, Any] = {"scorers": scorers} if scorers else {}
    return EvalSpec(
        eval_id=short_id("eval", header.id, condition, *([str(arm.replicate)] if run else [])),
        run_id=header.id,
        created=header.created,
        task=header.scenario_id,
        task_id=short_id("task", header.scenario_sha256),
        task_version=0,
        task_file=header.scenario_path,
        task_display_name=scenario.title if scenario else header.scenario_id,
        task_description=f"{header.scenario_id} · {label}"
        + (f" · training run {arm.replicate}" if run else ""),
        task_args={"condition": condition, **run},
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
