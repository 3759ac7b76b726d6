"""Session files as TOML: the validating reader.

It parses with `tomllib` and checks every key and type, naming the file and the key path
(`trials[12].seed`) or the line:column of a syntax error, so a hand-edited or damaged file
is reported with where and what to fix. The allowed values are shared with `write`
through `schema`. Format: docs/session-format.md.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from persona_tui._util.atomic import describe_os_error
from persona_tui._util.tables import Problems, TableReader, closest
from persona_tui._util.textdata import DataFileError, loads_toml
from persona_tui._util.toml_scan import KeyPath
from persona_tui.errors import SessionError
from persona_tui.session.model import (
    FORMAT_VERSION,
    AdapterRecord,
    Annotation,
    OptionCell,
    OptionScore,
    Plan,
    Session,
    SessionHeader,
    Trial,
)
from persona_tui.session.schema import (
    FINISH_REASONS,
    INT64_BOUND,
    PROMPT_MODES,
    STATUSES,
    optional_base,
)
from persona_tui.values import ModelInfo, SamplingParams

T = TypeVar("T")


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, (datetime, date, time)):
        return f"an unquoted date/time ({value.isoformat()}); dates are stored as quoted strings"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _unknown_key(path: KeyPath, key: str, allowed: Sequence[str]) -> tuple[KeyPath, str]:
    close = closest(key, allowed)
    hint = f" (did you mean {close!r}?)" if close else ""
    return (*path, key), f"unknown key{hint}; allowed here: {', '.join(allowed)}"


def _problems(file: Path) -> Problems:
    """Session wording, failing at the first problem with a SessionError."""
    return Problems(
        file,
        fail_fast=SessionError,
        describe=_type_name,
        unknown_key=_unknown_key,
        quote_keys=False,
    )


# Each reader below returns a placeholder only after a problem, which has raised already.


def _table(t: TableReader, key: str, allowed: Sequence[str] | None) -> TableReader:
    found = t.table_at(key, allowed, required=True)
    return found if found is not None else TableReader(t.problems, {}, (*t.path, key))


def _str(t: TableReader, key: str) -> str:
    return t.value(key, "a string", (str,), required=True) or ""


def _int(t: TableReader, key: str, minimum: int = 0) -> int:
    value = t.value(key, "an integer", (int,), required=True)
    if value is None:
        return 0
    if value < minimum:
        t.report(key, f"expected an integer >= {minimum}, got {value}")
    if value >= INT64_BOUND:  # tomllib accepts any size; TOML (and the writer) stop here
        t.report(key, f"expected an integer < 2**63 (64-bit), got {value}")
    return int(value)


def _any_int(t: TableReader, key: str) -> int:
    return _int(t, key, minimum=-INT64_BOUND)


def _float(t: TableReader, key: str) -> float:
    value = t.value(key, "a number", (int, float), required=True)
    return 0.0 if value is None else float(value)


def _bool(t: TableReader, key: str) -> bool:
    return bool(t.value(key, "true or false", (bool,), required=True))


def _choice(t: TableReader, key: str, choices: tuple[str, ...]) -> Any:
    value = _str(t, key)
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        t.report(key, f"expected one of {options}, got {value!r}")
    return value


def _str_tuple(t: TableReader, key: str) -> tuple[str, ...]:
    value = t.value(key, "an array of strings", (list,), required=True)
    for n, item in enumerate(value or ()):
        if not isinstance(item, str):
            t.wrong_type((key, n), "a string", item)
    return tuple(value or ())


def _str_map(t: TableReader, key: str) -> dict[str, str]:
    sub = _table(t, key, None)
    for k in sub.table:
        sub.value(k, "a string", (str,))
    return dict(sub.table)


def _int_map(t: TableReader, key: str) -> dict[str, int]:
    sub = _table(t, key, None)
    for k in sub.table:
        sub.value(k, "an integer", (int,))
    return dict(sub.table)


_FIELD_READERS: dict[str, Callable[[TableReader, str], object]] = {
    "str": _str,
    "int": _any_int,
    "float": _float,
    "bool": _bool,
    "dict[str, str]": _str_map,
}


def _dataclass_table(
    cls: type[T],
    t: TableReader,
    key: str,
    all_required: bool = False,
    given: dict[str, object] | None = None,
) -> T:
    """Build `cls` (SamplingParams, ModelInfo, AdapterRecord) from the table `key`, field
    by field (fields in `given` are not in the table: they take the value given).

    A field with a default may be absent (it then takes the default) unless `all_required`.
    """
    given = given or {}
    fields = [f for f in dataclasses.fields(cls) if f.name not in given]  # type: ignore[arg-type]
    table = _table(t, key, tuple(f.name for f in fields))
    kwargs: dict[str, object] = dict(given)
    for f in fields:
        type_name = str(f.type)
        missing_ok = not all_required and (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        if not table.has(f.name) and missing_ok:
            continue  # absent optional key: the dataclass default (None, "", 0, {})
        base = optional_base(type_name) or type_name
        reader = _FIELD_READERS.get(base)
        if reader is None:  # pragma: no cover - only when a new field type is added
            raise TypeError(f"session.read cannot read {key}.{f.name} of type {base}")
        kwargs[f.name] = reader(table, f.name)
    return cls(**kwargs)


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
)
_ANNOTATION_KEYS = ("annotator", "time", "label", "scores", "note", "blind_seed")
_OPTION_CELL_KEYS = ("condition", "probe", "prompt", "prompt_tokens", "seconds", "options")
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
    problems = _problems(file)
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

    sess = _table(top, "session", _SESSION_KEYS)
    model = _dataclass_table(ModelInfo, top, "model")
    sampling = _dataclass_table(SamplingParams, top, "sampling", all_required=True)
    plan_t = _table(top, "plan", _PLAN_KEYS)
    plan = Plan(
        conditions=_str_tuple(plan_t, "conditions"),
        probes=_str_tuple(plan_t, "probes"),
        samples=_int(plan_t, "samples"),
        seed=_any_int(plan_t, "seed"),
        prompt_mode=_choice(plan_t, "prompt_mode", PROMPT_MODES),
        stop=_str_tuple(plan_t, "stop") if plan_t.has("stop") else (),
        # Sessions before batched decoding ran one by one.
        batch=_int(plan_t, "batch", minimum=1) if plan_t.has("batch") else 1,
        # Sessions before groups spanning cells batched each cell's samples alone (0).
        batch_cells=_int(plan_t, "batch_cells") if plan_t.has("batch_cells") else 0,
    )
    scen = _table(top, "scenario", _SCENARIO_KEYS)
    header = SessionHeader(
        id=_str(sess, "id"),
        scenario_id=_str(sess, "scenario_id"),
        scenario_sha256=_str(sess, "scenario_sha256"),
        scenario_source=_str(scen, "source"),
        scenario_path=_str(sess, "scenario_path"),
        created=_str(sess, "created"),
        status=_choice(sess, "status", STATUSES),
        model=model,
        sampling=sampling,
        plan=plan,
        app_version=_str(sess, "app_version"),
        chat_template=_str(scen, "chat_template") if scen.has("chat_template") else None,
        adapters=_read_adapters(top, plan),
    )

    trials = [_read_trial(t) for t in top.each_table("trials", _TRIAL_KEYS)]
    seen: dict[tuple[str, str, int], int] = {}
    for n, trial in enumerate(trials):
        first = seen.setdefault((trial.condition, trial.probe, trial.sample), n)
        if first != n:
            problems.add(
                ("trials", n),
                f"duplicate of trials[{first}] (condition {trial.condition!r}, "
                f"probe {trial.probe!r}, sample {trial.sample}); each trial may appear once",
            )
    cells = [
        _read_option_cell(t)
        for t in top.each_table(
            "option_cells", _OPTION_CELL_KEYS, expected="an array of tables ([[option_cells]])"
        )
    ]
    seen_cells: dict[tuple[str, str], int] = {}
    for n, cell in enumerate(cells):
        first = seen_cells.setdefault((cell.condition, cell.probe), n)
        if first != n:
            problems.add(
                ("option_cells", n),
                f"duplicate of option_cells[{first}] (condition {cell.condition!r}, "
                f"probe {cell.probe!r}); each cell may appear once",
            )
    return Session(header=header, trials=trials, path=file, option_cells=cells)


def _read_adapters(top: TableReader, plan: Plan) -> tuple[AdapterRecord, ...]:
    """`[adapters.<condition>]`: one per training condition of the plan, in plan order."""
    table = top.table_at("adapters", None)
    if table is None:
        return ()
    for condition in table.table:
        if condition not in plan.conditions:
            table.report(
                condition,
                f"not a condition of this session's plan ({', '.join(plan.conditions)})",
            )
    return tuple(
        _dataclass_table(AdapterRecord, table, condition, given={"condition": condition})
        for condition in plan.conditions
        if condition in table.table
    )


def _float_tuple(t: TableReader, key: str) -> tuple[float, ...]:
    value = t.value(key, "an array of numbers", (list,), required=True)
    for n, item in enumerate(value or ()):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            t.wrong_type((key, n), "a number", item)
    return tuple(float(item) for item in value or ())


def _read_option(t: TableReader) -> OptionScore:
    option = OptionScore(
        id=_str(t, "id"),
        label=_str(t, "label"),
        text=_str(t, "text"),
        logprob=_float(t, "logprob"),
        n_tokens=_int(t, "n_tokens"),
        token_logprobs=_float_tuple(t, "token_logprobs"),
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
        condition=_str(t, "condition"),
        probe=_str(t, "probe"),
        prompt=_str(t, "prompt"),
        prompt_tokens=_int(t, "prompt_tokens"),
        seconds=_float(t, "seconds"),
        options=tuple(options),
    )


def _read_trial(t: TableReader) -> Trial:
    annotations = [
        Annotation(
            annotator=_str(a, "annotator"),
            time=_str(a, "time"),
            label=_str(a, "label") if a.has("label") else "",
            scores=_int_map(a, "scores") if a.has("scores") else {},
            note=_str(a, "note") if a.has("note") else "",
            blind_seed=_int(a, "blind_seed") if a.has("blind_seed") else None,
        )
        for a in t.each_table(
            "annotations",
            _ANNOTATION_KEYS,
            expected="an array of tables ([[trials.annotations]])",
        )
    ]
    return Trial(
        condition=_str(t, "condition"),
        probe=_str(t, "probe"),
        sample=_int(t, "sample"),
        seed=_any_int(t, "seed"),
        prompt=_str(t, "prompt"),
        response=_str(t, "response"),
        finish_reason=_choice(t, "finish_reason", FINISH_REASONS),
        prompt_tokens=_int(t, "prompt_tokens"),
        completion_tokens=_int(t, "completion_tokens"),
        started=_str(t, "started"),
        seconds=_float(t, "seconds"),
        turn_responses=_str_tuple(t, "turn_responses") if t.has("turn_responses") else (),
        annotations=tuple(annotations),
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
