"""Session files as TOML: the validating reader.

It parses with `tomllib` and checks every key and type, naming the file and the key path
(`trials[12].seed`) or the line:column of a syntax error, so a hand-edited or damaged file
is reported with where and what to fix. The allowed values are shared with `write`
through `schema`. Format: docs/session-format.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from persona_tui._util.atomic import describe_os_error
from persona_tui._util.textdata import DataFileError, loads_toml
from persona_tui.errors import SessionError
from persona_tui.session.model import (
    FORMAT_VERSION,
    Annotation,
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


class _Reader:
    """Validating accessors that name the file and the key path in every error."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def fail(self, where: str, message: str) -> NoReturn:
        raise SessionError(f"{self.file}: {where}: {message}")

    def expect(self, where: str, expected: str, value: object) -> NoReturn:
        self.fail(where, f"expected {expected}, got {_type_name(value)}")

    def keys(self, table: Mapping[str, object], allowed: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                allowed_list = ", ".join(allowed)
                name = f"{where}.{key}" if where else key
                self.fail(name, f"unknown key{hint}; allowed here: {allowed_list}")

    def get(self, table: Mapping[str, object], key: str, where: str) -> object:
        if key not in table:
            self.fail(f"{where}.{key}" if where else key, "required key is missing")
        return table[key]

    def table(self, table: Mapping[str, object], key: str, where: str = "") -> dict[str, Any]:
        value = self.get(table, key, where)
        if not isinstance(value, dict):
            self.expect(f"{where}.{key}" if where else key, "a table", value)
        return value

    def str_(self, table: Mapping[str, object], key: str, where: str) -> str:
        value = self.get(table, key, where)
        if not isinstance(value, str):
            self.expect(f"{where}.{key}", "a string", value)
        return value

    def int_(self, table: Mapping[str, object], key: str, where: str, minimum: int = 0) -> int:
        value = self.get(table, key, where)
        if type(value) is not int:
            self.expect(f"{where}.{key}", "an integer", value)
        if value < minimum:
            self.fail(f"{where}.{key}", f"expected an integer >= {minimum}, got {value}")
        if value >= INT64_BOUND:  # tomllib accepts any size; TOML (and the writer) stop here
            self.fail(f"{where}.{key}", f"expected an integer < 2**63 (64-bit), got {value}")
        return value

    def any_int(self, table: Mapping[str, object], key: str, where: str) -> int:
        return self.int_(table, key, where, minimum=-INT64_BOUND)

    def float_(self, table: Mapping[str, object], key: str, where: str) -> float:
        value = self.get(table, key, where)
        if type(value) not in (int, float):
            self.expect(f"{where}.{key}", "a number", value)
        return float(value)  # type: ignore[arg-type]

    def bool_(self, table: Mapping[str, object], key: str, where: str) -> bool:
        value = self.get(table, key, where)
        if not isinstance(value, bool):
            self.expect(f"{where}.{key}", "true or false", value)
        return value

    def choice(
        self, table: Mapping[str, object], key: str, where: str, choices: tuple[str, ...]
    ) -> Any:
        value = self.str_(table, key, where)
        if value not in choices:
            options = ", ".join(repr(c) for c in choices)
            self.fail(f"{where}.{key}", f"expected one of {options}, got {value!r}")
        return value

    def str_tuple(self, table: Mapping[str, object], key: str, where: str) -> tuple[str, ...]:
        value = self.get(table, key, where)
        if not isinstance(value, list):
            self.expect(f"{where}.{key}", "an array of strings", value)
        for n, item in enumerate(value):
            if not isinstance(item, str):
                self.expect(f"{where}.{key}[{n}]", "a string", item)
        return tuple(value)

    def str_map(self, table: Mapping[str, object], key: str, where: str) -> dict[str, str]:
        value = self.table(table, key, where)
        for k, v in value.items():
            if not isinstance(v, str):
                self.expect(f"{where}.{key}.{k}", "a string", v)
        return dict(value)

    def int_map(self, table: Mapping[str, object], key: str, where: str) -> dict[str, int]:
        value = self.table(table, key, where)
        for k, v in value.items():
            if type(v) is not int:
                self.expect(f"{where}.{key}.{k}", "an integer", v)
        return dict(value)

    def dataclass_table(
        self, cls: type[T], table: Mapping[str, Any], where: str, all_required: bool = False
    ) -> T:
        """Build `cls` (SamplingParams, ModelInfo) from a table, field by field.

        A field with a default may be absent (it then takes the default) unless `all_required`.
        """
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        self.keys(table, tuple(f.name for f in fields), where)
        kwargs: dict[str, object] = {}
        for f in fields:
            type_name = str(f.type)
            missing_ok = not all_required and (
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            )
            if f.name not in table and missing_ok:
                continue  # absent optional key: the dataclass default (None, "", 0, {})
            base = optional_base(type_name) or type_name
            readers: dict[str, Callable[[Mapping[str, object], str, str], object]] = {
                "str": self.str_,
                "int": self.any_int,
                "float": self.float_,
                "bool": self.bool_,
                "dict[str, str]": self.str_map,
            }
            reader = readers.get(base)
            if reader is None:  # pragma: no cover - only when a new field type is added
                raise TypeError(f"session.read cannot read {where}.{f.name} of type {base}")
            kwargs[f.name] = reader(table, f.name, where)
        return cls(**kwargs)


_TOP_KEYS = ("format_version", "session", "model", "sampling", "plan", "scenario", "trials")
_SESSION_KEYS = (
    "id",
    "scenario_id",
    "scenario_sha256",
    "created",
    "status",
    "app_version",
    "scenario_path",
)
_PLAN_KEYS = ("conditions", "probes", "samples", "seed", "prompt_mode", "stop")
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
    r = _Reader(file)
    if "format_version" not in doc:
        r.fail("format_version", "missing: this is not a persona-tui session file")
    version = doc["format_version"]
    if type(version) is not int:
        r.expect("format_version", "an integer", version)
    if version != FORMAT_VERSION:
        newer = " (written by a newer persona-tui: upgrade it)" if version > FORMAT_VERSION else ""
        r.fail(
            "format_version",
            f"unknown session format {version}{newer}; this version reads format {FORMAT_VERSION}",
        )
    r.keys(doc, _TOP_KEYS, "")

    sess = r.table(doc, "session")
    r.keys(sess, _SESSION_KEYS, "session")
    model = r.dataclass_table(ModelInfo, r.table(doc, "model"), "model")
    sampling_table = r.table(doc, "sampling")
    sampling = r.dataclass_table(SamplingParams, sampling_table, "sampling", all_required=True)
    plan_t = r.table(doc, "plan")
    r.keys(plan_t, _PLAN_KEYS, "plan")
    plan = Plan(
        conditions=r.str_tuple(plan_t, "conditions", "plan"),
        probes=r.str_tuple(plan_t, "probes", "plan"),
        samples=r.int_(plan_t, "samples", "plan"),
        seed=r.any_int(plan_t, "seed", "plan"),
        prompt_mode=r.choice(plan_t, "prompt_mode", "plan", PROMPT_MODES),
        stop=r.str_tuple(plan_t, "stop", "plan") if "stop" in plan_t else (),
    )
    scen = r.table(doc, "scenario")
    r.keys(scen, _SCENARIO_KEYS, "scenario")
    header = SessionHeader(
        id=r.str_(sess, "id", "session"),
        scenario_id=r.str_(sess, "scenario_id", "session"),
        scenario_sha256=r.str_(sess, "scenario_sha256", "session"),
        scenario_source=r.str_(scen, "source", "scenario"),
        scenario_path=r.str_(sess, "scenario_path", "session"),
        created=r.str_(sess, "created", "session"),
        status=r.choice(sess, "status", "session", STATUSES),
        model=model,
        sampling=sampling,
        plan=plan,
        app_version=r.str_(sess, "app_version", "session"),
        chat_template=r.str_(scen, "chat_template", "scenario")
        if "chat_template" in scen
        else None,
    )

    raw_trials = doc.get("trials", [])
    if not isinstance(raw_trials, list):
        r.expect("trials", "an array of tables ([[trials]])", raw_trials)
    trials = [_read_trial(r, t, f"trials[{n}]") for n, t in enumerate(raw_trials)]
    seen: dict[tuple[str, str, int], int] = {}
    for n, t in enumerate(trials):
        first = seen.setdefault((t.condition, t.probe, t.sample), n)
        if first != n:
            r.fail(
                f"trials[{n}]",
                f"duplicate of trials[{first}] (condition {t.condition!r}, probe {t.probe!r}, "
                f"sample {t.sample}); each trial may appear once",
            )
    return Session(header=header, trials=trials, path=file)


def _read_trial(r: _Reader, raw: object, w: str) -> Trial:
    if not isinstance(raw, dict):
        r.expect(w, "a table", raw)
    r.keys(raw, _TRIAL_KEYS, w)
    raw_annotations = raw.get("annotations", [])
    if not isinstance(raw_annotations, list):
        r.expect(f"{w}.annotations", "an array of tables ([[trials.annotations]])", raw_annotations)
    annotations = []
    for n, a in enumerate(raw_annotations):
        aw = f"{w}.annotations[{n}]"
        if not isinstance(a, dict):
            r.expect(aw, "a table", a)
        r.keys(a, _ANNOTATION_KEYS, aw)
        annotations.append(
            Annotation(
                annotator=r.str_(a, "annotator", aw),
                time=r.str_(a, "time", aw),
                label=r.str_(a, "label", aw) if "label" in a else "",
                scores=r.int_map(a, "scores", aw) if "scores" in a else {},
                note=r.str_(a, "note", aw) if "note" in a else "",
                blind_seed=r.int_(a, "blind_seed", aw) if "blind_seed" in a else None,
            )
        )
    return Trial(
        condition=r.str_(raw, "condition", w),
        probe=r.str_(raw, "probe", w),
        sample=r.int_(raw, "sample", w),
        seed=r.any_int(raw, "seed", w),
        prompt=r.str_(raw, "prompt", w),
        response=r.str_(raw, "response", w),
        finish_reason=r.choice(raw, "finish_reason", w, FINISH_REASONS),
        prompt_tokens=r.int_(raw, "prompt_tokens", w),
        completion_tokens=r.int_(raw, "completion_tokens", w),
        started=r.str_(raw, "started", w),
        seconds=r.float_(raw, "seconds", w),
        turn_responses=r.str_tuple(raw, "turn_responses", w) if "turn_responses" in raw else (),
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
