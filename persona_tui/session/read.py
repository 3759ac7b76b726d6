"""Session files as TOML: the validating reader.

It parses with `tomllib` and checks every key and type, naming the file and the key path
(`trials[12].seed`) or the line:column of a syntax error, so a hand-edited or damaged file
is reported with where and what to fix. The typed readers of single values are in
`fields`; the allowed values are shared with `write` through `schema`. Format:
docs/session-format.md.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from persona_tui._util.atomic import describe_os_error
from persona_tui._util.tables import Problems, TableReader
from persona_tui._util.textdata import DataFileError, loads_toml
from persona_tui.errors import SessionError
from persona_tui.session.fields import (
    any_int_at,
    bool_at,
    choice_at,
    dataclass_at,
    float_at,
    float_map_at,
    float_tuple_at,
    int_at,
    int_map_at,
    session_problems,
    str_at,
    str_tuple_at,
    table_at,
)
from persona_tui.session.model import (
    FORMAT_VERSION,
    AdapterRecord,
    Annotation,
    Arm,
    OptionCell,
    OptionScore,
    Plan,
    Session,
    SessionHeader,
    SteeringRecord,
    TraitRecord,
    Trial,
    TrialKey,
)
from persona_tui.session.schema import FINISH_REASONS, PROMPT_MODES, STATUSES, adapter_key
from persona_tui.values import ModelInfo, SamplingParams

_TOP_KEYS = (
    "format_version",
    "session",
    "model",
    "sampling",
    "plan",
    "scenario",
    "trials",
    "option_cells",
    "adapters",
    "traits",
    "steering",
)
_SESSION_KEYS = (
    "id",
    "scenario_id",
    "scenario_sha256",
    "created",
    "status",
    "app_version",
    "scenario_path",
)
_PLAN_KEYS = (
    "conditions",
    "probes",
    "samples",
    "seed",
    "prompt_mode",
    "stop",
    "batch",
    "batch_cells",
    "sample",
    "score",
    "replicates",
    "replicated",
)
_SCENARIO_KEYS = ("source", "chat_template")
_TRIAL_KEYS = (
    "condition",
    "probe",
    "sample",
    "seed",
    "prompt",
    "response",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "started",
    "seconds",
    "turn_responses",
    "annotations",
    "replicate",
    "projections",
)
_ANNOTATION_KEYS = ("annotator", "time", "label", "scores", "note", "blind_seed")
_OPTION_CELL_KEYS = (
    "condition",
    "probe",
    "prompt",
    "prompt_tokens",
    "seconds",
    "batch",
    "options",
    "replicate",
    "projections",
)
_OPTION_KEYS = ("id", "label", "text", "logprob", "n_tokens", "token_logprobs")


def _fast_loads(text: str) -> dict[str, Any]:
    """Parse with rtoml (Rust; ~8x faster than tomllib on large sessions) when installed.

    Raises ValueError for a document it rejects; the caller then lets tomllib parse it,
    for tomllib's error positions. Without rtoml, this is tomllib.
    """
    try:
        import rtoml
    except ImportError:
        return tomllib.loads(text)
    try:
        data: dict[str, Any] = rtoml.loads(text)
    except rtoml.TomlParsingError as exc:
        raise ValueError(str(exc)) from None
    return data


def _parse_toml(data: bytes, file: Path) -> dict[str, Any]:
    if not data.strip():
        raise SessionError(
            f"{file}: the file is empty ({len(data)} bytes): not a session, or it was truncated"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SessionError(
            f"{file}:{line}:{column}: not valid UTF-8 (byte {exc.start}): the file is corrupt"
        ) from None
    try:
        return _fast_loads(text)
    except (ValueError, RecursionError):  # RecursionError: tomllib, when rtoml is missing
        pass  # re-parsed below by tomllib, whose errors give the line and column
    try:
        return loads_toml(text, file)
    except DataFileError as exc:
        problem = exc.problem + (" at the end of the file" if exc.at_end else "")
        raise SessionError(
            f"{exc.where}: not valid TOML ({problem}): the session file is corrupt or truncated"
        ) from None


def parse_session(data: bytes, file: Path) -> Session:
    """Validate a session file's bytes and build the Session; SessionError on any problem."""
    doc = _parse_toml(data, file)
    problems = session_problems(file)
    if "format_version" not in doc:
        problems.add(("format_version",), "missing: this is not a persona-tui session file")
    version = doc["format_version"]
    if type(version) is not int:
        problems.wrong_type(("format_version",), "an integer", version)
    if version != FORMAT_VERSION:
        newer = " (written by a newer persona-tui: upgrade it)" if version > FORMAT_VERSION else ""
        problems.add(
            ("format_version",),
            f"unknown session format {version}{newer}; this version reads format {FORMAT_VERSION}",
        )
    top = TableReader(problems, doc, (), _TOP_KEYS)

    sess = table_at(top, "session", _SESSION_KEYS)
    model = dataclass_at(ModelInfo, top, "model")
    sampling = dataclass_at(SamplingParams, top, "sampling", all_required=True)
    plan_t = table_at(top, "plan", _PLAN_KEYS)
    plan = Plan(
        conditions=str_tuple_at(plan_t, "conditions"),
        probes=str_tuple_at(plan_t, "probes"),
        samples=int_at(plan_t, "samples"),
        seed=any_int_at(plan_t, "seed"),
        prompt_mode=choice_at(plan_t, "prompt_mode", PROMPT_MODES),
        stop=str_tuple_at(plan_t, "stop") if plan_t.has("stop") else (),
        # Sessions before batched decoding ran one by one.
        batch=int_at(plan_t, "batch", minimum=1) if plan_t.has("batch") else 1,
        # Sessions before groups spanning cells batched each cell's samples alone (0).
        batch_cells=int_at(plan_t, "batch_cells") if plan_t.has("batch_cells") else 0,
        # Sessions before these fields sampled and scored.
        sample=bool_at(plan_t, "sample") if plan_t.has("sample") else True,
        score=bool_at(plan_t, "score") if plan_t.has("score") else True,
        # Sessions before replicated training studies: none.
        replicates=int_at(plan_t, "replicates") if plan_t.has("replicates") else 0,
        replicated=str_tuple_at(plan_t, "replicated") if plan_t.has("replicated") else (),
    )
    for name in plan.replicated:
        if name not in plan.conditions:
            plan_t.report("replicated", f"{name!r} is not one of plan.conditions")
    if plan.replicated and not plan.replicates:
        plan_t.report("replicated", "names conditions, but there is no plan.replicates")
    if not plan.sample and not plan.score:
        plan_t.report("score", "sample and score are both false: the run would do nothing")
    scen = table_at(top, "scenario", _SCENARIO_KEYS)
    header = SessionHeader(
        id=str_at(sess, "id"),
        scenario_id=str_at(sess, "scenario_id"),
        scenario_sha256=str_at(sess, "scenario_sha256"),
        scenario_source=str_at(scen, "source"),
        scenario_path=str_at(sess, "scenario_path"),
        created=str_at(sess, "created"),
        status=choice_at(sess, "status", STATUSES),
        model=model,
        sampling=sampling,
        plan=plan,
        app_version=str_at(sess, "app_version"),
        chat_template=str_at(scen, "chat_template") if scen.has("chat_template") else None,
        adapters=_read_adapters(top, plan),
        traits=_read_records(top, "traits", TraitRecord, "trait"),
        steering=_read_records(top, "steering", SteeringRecord, "condition"),
    )
    for condition in header.steering:
        if condition not in plan.conditions:
            problems.add(
                ("steering", condition),
                f"not a condition of this session's plan ({', '.join(plan.conditions)})",
            )

    trials = [_read_trial(t) for t in top.each_table("trials", _TRIAL_KEYS)]
    seen: dict[TrialKey, int] = {}
    arms = set(plan.arms)
    for n, trial in enumerate(trials):
        first = seen.setdefault(trial.key, n)
        if first != n:
            problems.add(
                ("trials", n),
                f"duplicate of trials[{first}] (condition {trial.condition!r}, "
                f"probe {trial.probe!r}, sample {trial.sample}{_replicate(trial.replicate)}); "
                "each trial may appear once",
            )
        if trial.condition in plan.conditions and trial.arm not in arms:
            problems.add(("trials", n, "replicate"), _not_an_arm(plan, trial.arm))
        _check_projections(problems, ("trials", n), trial.projections, header)
    cells = [
        _read_option_cell(t)
        for t in top.each_table(
            "option_cells", _OPTION_CELL_KEYS, expected="an array of tables ([[option_cells]])"
        )
    ]
    seen_cells: dict[tuple[str, str, int], int] = {}
    for n, cell in enumerate(cells):
        first = seen_cells.setdefault((cell.condition, cell.probe, cell.replicate), n)
        if first != n:
            problems.add(
                ("option_cells", n),
                f"duplicate of option_cells[{first}] (condition {cell.condition!r}, "
                f"probe {cell.probe!r}{_replicate(cell.replicate)}); each cell may appear once",
            )
        if cell.condition in plan.conditions and cell.arm not in arms:
            problems.add(("option_cells", n, "replicate"), _not_an_arm(plan, cell.arm))
        _check_projections(problems, ("option_cells", n), cell.projections, header)
    return Session(header=header, trials=trials, path=file, option_cells=cells)


def _replicate(replicate: int) -> str:
    return f", replicate {replicate}" if replicate else ""


def _not_an_arm(plan: Plan, arm: Arm) -> str:
    if arm.condition in plan.replicated:
        return f"must be 1..{plan.replicates} (condition {arm.condition!r} is replicated)"
    return f"must be 0: condition {arm.condition!r} has no replicates in this plan"


def projection_problem(trait: str, header: SessionHeader) -> str | None:
    """Why a projection on `trait` cannot be stored with `header` (None: it can): every
    projection names a measured trait, whose `[traits.<id>]` says the layer and vectors."""
    if trait in header.traits:
        return None
    known = ", ".join(header.traits) or "none"
    return f"trait {trait!r} has no [traits.{trait}] table in the header (traits: {known})"


def _check_projections(
    problems: Problems, where: tuple[str, int], values: dict[str, float], header: SessionHeader
) -> None:
    for trait in values:
        problem = projection_problem(trait, header)
        if problem is not None:
            problems.add((*where, "projections", trait), problem)


_R = TypeVar("_R", TraitRecord, SteeringRecord)


def _read_records(top: TableReader, key: str, cls: type[_R], id_field: str) -> dict[str, _R]:
    """`[traits.<id>]` or `[steering.<condition>]`: the table's name is the record's id."""
    table = top.table_at(key, None)
    if table is None:
        return {}
    return {name: dataclass_at(cls, table, name, given={id_field: name}) for name in table.table}


def _read_adapters(top: TableReader, plan: Plan) -> tuple[AdapterRecord, ...]:
    """`[adapters.<condition>]` (`[adapters."<condition>/<k>"]` for replicate k): one per
    adapter arm of the plan, in plan order."""
    table = top.table_at("adapters", None)
    if table is None:
        return ()
    found: dict[Arm, AdapterRecord] = {}
    for key in table.table:
        condition, slash, _ = key.partition("/")
        if condition not in plan.conditions:
            table.report(
                key, f"not a condition of this session's plan ({', '.join(plan.conditions)})"
            )
            continue
        record = dataclass_at(AdapterRecord, table, key, given={"condition": condition})
        if adapter_key(condition, record.replicate) != key:
            table.report(
                (key, "replicate"),
                f"is {record.replicate}, but the table's name says {key!r}"
                + ("" if slash else " (a replicate's table is named CONDITION/K)"),
            )
        found[record.arm] = record
    return tuple(found[arm] for arm in plan.arms if arm in found)


def _read_option(t: TableReader) -> OptionScore:
    option = OptionScore(
        id=str_at(t, "id"),
        label=str_at(t, "label"),
        text=str_at(t, "text"),
        logprob=float_at(t, "logprob"),
        n_tokens=int_at(t, "n_tokens"),
        token_logprobs=float_tuple_at(t, "token_logprobs"),
    )
    if len(option.token_logprobs) != option.n_tokens:
        t.report(
            "token_logprobs",
            f"holds {len(option.token_logprobs)} values, but n_tokens = {option.n_tokens}",
        )
    return option


def _read_option_cell(t: TableReader) -> OptionCell:
    options = [
        _read_option(o)
        for o in t.each_table(
            "options", _OPTION_KEYS, expected="an array of tables ([[option_cells.options]])"
        )
    ]
    return OptionCell(
        condition=str_at(t, "condition"),
        probe=str_at(t, "probe"),
        prompt=str_at(t, "prompt"),
        prompt_tokens=int_at(t, "prompt_tokens"),
        seconds=float_at(t, "seconds"),
        options=tuple(options),
        # Cells before options were decoded together: each option alone (0).
        batch=int_at(t, "batch") if t.has("batch") else 0,
        replicate=int_at(t, "replicate") if t.has("replicate") else 0,
        projections=float_map_at(t, "projections") if t.has("projections") else {},
    )


def _read_trial(t: TableReader) -> Trial:
    annotations = [
        Annotation(
            annotator=str_at(a, "annotator"),
            time=str_at(a, "time"),
            label=str_at(a, "label") if a.has("label") else "",
            scores=int_map_at(a, "scores") if a.has("scores") else {},
            note=str_at(a, "note") if a.has("note") else "",
            blind_seed=int_at(a, "blind_seed") if a.has("blind_seed") else None,
        )
        for a in t.each_table(
            "annotations",
            _ANNOTATION_KEYS,
            expected="an array of tables ([[trials.annotations]])",
        )
    ]
    return Trial(
        condition=str_at(t, "condition"),
        probe=str_at(t, "probe"),
        sample=int_at(t, "sample"),
        seed=any_int_at(t, "seed"),
        prompt=str_at(t, "prompt"),
        response=str_at(t, "response"),
        finish_reason=choice_at(t, "finish_reason", FINISH_REASONS),
        prompt_tokens=int_at(t, "prompt_tokens"),
        completion_tokens=int_at(t, "completion_tokens"),
        started=str_at(t, "started"),
        seconds=float_at(t, "seconds"),
        turn_responses=str_tuple_at(t, "turn_responses") if t.has("turn_responses") else (),
        annotations=tuple(annotations),
        replicate=int_at(t, "replicate") if t.has("replicate") else 0,
        projections=float_map_at(t, "projections") if t.has("projections") else {},
    )


def read_session_file(path: Path) -> Session:
    """Read and validate the session file at `path` (no lock taken)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SessionError(f"{path}: no such session file") from None
    except IsADirectoryError:
        raise SessionError(f"{path}: is a folder, not a session file") from None
    except OSError as exc:
        raise SessionError(
            f"{path}: cannot read the session file: {describe_os_error(exc)}"
        ) from None
    return parse_session(data, path)
