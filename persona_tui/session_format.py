"""Session files as TOML: a fast, exact writer and a validating reader.

The writer renders the header and each trial as separate text chunks, so the store can
cache every finished trial's chunk and re-render only what changed; the chunks joined in
order form one valid TOML document (`render_session`). It is hand-written rather than
`tomli_w` because it is over twice as fast, and it controls the escaping: strings are
stored exactly (every control character, escape sequence and "\\r" is escaped; text with
newlines is written as a readable multi-line string) and the file is safe to `cat`.

The reader parses with `tomllib` and checks every key and type, naming the file and the
key path (`trials[12].seed`) or the line:column of a syntax error. Format: docs/session-format.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from persona_tui.atomic import describe_os_error
from persona_tui.backends.base import ModelInfo, SamplingParams
from persona_tui.errors import SessionError
from persona_tui.session import (
    FORMAT_VERSION,
    Annotation,
    Plan,
    Session,
    SessionHeader,
    Trial,
)

STATUSES = ("running", "complete", "interrupted")
FINISH_REASONS = ("stop", "length", "cancelled")
PROMPT_MODES = ("chat", "transcript")
_INT64 = 2**63

# ---------------------------------------------------------------------------- writing

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# One-line basic strings escape every C0/C1 control, DEL, '"' and '\'.
_ESCAPE_ONE_LINE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')
# Multi-line strings keep "\n" and "\t" raw. A '"' is escaped when another '"' or the end
# follows, so no '"""' can appear inside and the closing delimiter is unambiguous.
_ESCAPE_MULTILINE = re.compile(r'[\x00-\x08\x0b-\x1f\x7f-\x9f\\]|"(?="|\Z)')
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_ESCAPES = {chr(c): f"\\u{c:04x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update(_SHORT_ESCAPES)
_ESCAPES.update({'"': '\\"', "\\": "\\\\"})


def _escape(match: re.Match[str]) -> str:
    return _ESCAPES[match.group()]


def _check_storable(value: str, where: str) -> None:
    surrogate = _SURROGATE.search(value)
    if surrogate:
        raise SessionError(
            f"{where} contains a lone surrogate (U+{ord(surrogate.group()):04X} at index "
            f"{surrogate.start()}), which UTF-8 and TOML cannot store; the backend must replace "
            "it (e.g. with U+FFFD) before the trial is saved"
        )


def render_string(value: str, where: str = "value") -> str:
    """`value` as a TOML basic string that reads back identical (multi-line if it has "\\n")."""
    _check_storable(value, where)
    if "\n" in value:
        # The newline right after the opening quotes is dropped by every TOML parser.
        return '"""\n' + _ESCAPE_MULTILINE.sub(_escape, value) + '"""'
    return '"' + _ESCAPE_ONE_LINE.sub(_escape, value) + '"'


def render_key(key: str) -> str:
    """`key` bare when TOML allows it, quoted otherwise."""
    if _BARE_KEY.match(key):
        return key
    _check_storable(key, f"key {key!r}")
    return '"' + _ESCAPE_ONE_LINE.sub(_escape, key) + '"'  # keys cannot be multi-line strings


def _render_int(value: object, where: str, minimum: int = -_INT64) -> str:
    if type(value) is not int:
        raise SessionError(f"{where} must be an integer, not {value!r}")
    if not -_INT64 <= value < _INT64:
        raise SessionError(f"{where} = {value} does not fit in a TOML integer (64-bit)")
    if value < minimum:
        raise SessionError(f"{where} must be >= {minimum}, not {value}")
    return str(value)


def _render_choice(value: object, choices: tuple[str, ...], where: str) -> str:
    # The writer refuses what the reader would refuse, so a saved session always loads.
    if value not in choices:
        raise SessionError(f"{where} must be one of {', '.join(choices)}; not {value!r}")
    return _render_str(value, where)


def _render_float(value: object, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SessionError(f"{where} must be a number, not {value!r}")
    return repr(float(value))  # the shortest text that reads back as the same float


def _render_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise SessionError(f"{where} must be a string, not {value!r}")
    return render_string(value, where)


def _render_bool(value: object, where: str) -> str:
    if not isinstance(value, bool):
        raise SessionError(f"{where} must be true or false, not {value!r}")
    return "true" if value else "false"


def _render_str_array(values: tuple[str, ...] | list[str], where: str) -> str:
    items = [_render_str(v, f"{where}[{i}]") for i, v in enumerate(values)]
    if not any(item.startswith('"""') for item in items):
        return "[" + ", ".join(items) + "]"
    return "[\n" + "".join(f"    {item},\n" for item in items) + "]"


def _render_scores(scores: Mapping[str, int], where: str) -> str:
    if not scores:
        return "{}"
    parts = [f"{render_key(k)} = {_render_int(v, f'{where}.{k}')}" for k, v in scores.items()]
    return "{ " + ", ".join(parts) + " }"


_Renderer = Callable[[object, str], str]
# Renderers for the field types of the backend dataclasses (SamplingParams, ModelInfo), so a
# field added there is written and read without a change here. Types are strings because
# those modules use `from __future__ import annotations`.
_SCALAR_RENDERERS: dict[str, _Renderer] = {
    "str": _render_str,
    "int": _render_int,
    "float": _render_float,
    "bool": _render_bool,
}


def _optional_base(type_name: str) -> str | None:
    parts = [p.strip() for p in type_name.split("|")]
    if len(parts) == 2 and "None" in parts:
        parts.remove("None")
        return parts[0]
    return None


def _render_dataclass_table(obj: object, where: str) -> tuple[list[str], dict[str, str]]:
    """Lines `key = value` for the scalar fields of `obj` (None omitted) and its str->str maps."""
    lines: list[str] = []
    maps: dict[str, str] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        type_name = str(f.type)
        if type_name == "dict[str, str]":
            body = "".join(
                f"{render_key(k)} = {_render_str(v, f'{where}.{f.name}.{k}')}\n"
                for k, v in value.items()
            )
            maps[f.name] = body
            continue
        base = _optional_base(type_name)
        if base is not None:
            if value is None:
                continue
            type_name = base
        renderer = _SCALAR_RENDERERS.get(type_name)
        if renderer is None:  # pragma: no cover - only when a new field type is added
            raise TypeError(f"session_format cannot store {where}.{f.name} of type {type_name}")
        lines.append(f"{f.name} = {renderer(value, f'{where}.{f.name}')}\n")
    return lines, maps


def render_header(header: SessionHeader) -> str:
    """Everything before the first `[[trials]]`: format_version, session, model, ..., scenario."""
    s = _render_str
    out = [
        "# persona-tui session. Format: docs/session-format.md\n",
        f"format_version = {FORMAT_VERSION}\n",
        "\n[session]\n",
        f"id = {s(header.id, 'session.id')}\n",
        f"scenario_id = {s(header.scenario_id, 'session.scenario_id')}\n",
        f"scenario_sha256 = {s(header.scenario_sha256, 'session.scenario_sha256')}\n",
        f"created = {s(header.created, 'session.created')}\n",
        f"status = {_render_choice(header.status, STATUSES, 'session.status')}\n",
        f"app_version = {s(header.app_version, 'session.app_version')}\n",
        f"scenario_path = {s(header.scenario_path, 'session.scenario_path')}\n",
        "\n[model]\n",
    ]
    lines, maps = _render_dataclass_table(header.model, "model")
    out += lines
    for name, body in maps.items():
        out += [f"\n[model.{name}]\n", body]
    out.append("\n[sampling]\n")
    out += _render_dataclass_table(header.sampling, "sampling")[0]
    plan = header.plan
    out += [
        "\n[plan]\n",
        f"conditions = {_render_str_array(plan.conditions, 'plan.conditions')}\n",
        f"probes = {_render_str_array(plan.probes, 'plan.probes')}\n",
        f"samples = {_render_int(plan.samples, 'plan.samples', 0)}\n",
        f"seed = {_render_int(plan.seed, 'plan.seed')}\n",
        f"prompt_mode = {_render_choice(plan.prompt_mode, PROMPT_MODES, 'plan.prompt_mode')}\n",
        f"stop = {_render_str_array(plan.stop, 'plan.stop')}\n",
        "\n[scenario]\n",
        f"source = {s(header.scenario_source, 'scenario.source')}\n",
    ]
    if header.chat_template is not None:
        out.append(f"chat_template = {s(header.chat_template, 'scenario.chat_template')}\n")
    return "".join(out)


def render_trial(trial: Trial) -> str:
    """One `[[trials]]` block with its `[[trials.annotations]]`, starting with a blank line."""
    w = f"trial {trial.condition}/{trial.probe}/{trial.sample}"
    i = _render_int
    out = [
        "\n[[trials]]\n",
        f"condition = {_render_str(trial.condition, w + ' condition')}\n",
        f"probe = {_render_str(trial.probe, w + ' probe')}\n",
        f"sample = {i(trial.sample, w + ' sample', 0)}\n",
        f"seed = {i(trial.seed, w + ' seed')}\n",
        f"prompt = {_render_str(trial.prompt, w + ' prompt')}\n",
        f"response = {_render_str(trial.response, w + ' response')}\n",
        "finish_reason = "
        f"{_render_choice(trial.finish_reason, FINISH_REASONS, w + ' finish_reason')}\n",
        f"prompt_tokens = {i(trial.prompt_tokens, w + ' prompt_tokens', 0)}\n",
        f"completion_tokens = {i(trial.completion_tokens, w + ' completion_tokens', 0)}\n",
        f"started = {_render_str(trial.started, w + ' started')}\n",
        f"seconds = {_render_float(trial.seconds, w + ' seconds')}\n",
        f"turn_responses = {_render_str_array(trial.turn_responses, w + ' turn_responses')}\n",
    ]
    for n, a in enumerate(trial.annotations):
        aw = f"{w} annotation {n}"
        out += [
            "\n[[trials.annotations]]\n",
            f"annotator = {_render_str(a.annotator, aw + ' annotator')}\n",
            f"time = {_render_str(a.time, aw + ' time')}\n",
            f"label = {_render_str(a.label, aw + ' label')}\n",
            f"scores = {_render_scores(a.scores, aw + ' scores')}\n",
            f"note = {_render_str(a.note, aw + ' note')}\n",
        ]
    return "".join(out)


def render_session(header: SessionHeader, trials: list[Trial]) -> str:
    """The whole file in one go (the store builds the same text from cached chunks)."""
    return render_header(header) + "".join(render_trial(t) for t in trials)


# ---------------------------------------------------------------------------- reading

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
        return value

    def any_int(self, table: Mapping[str, object], key: str, where: str) -> int:
        return self.int_(table, key, where, minimum=-_INT64)

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
            base = _optional_base(type_name) or type_name
            readers: dict[str, Callable[[Mapping[str, object], str, str], object]] = {
                "str": self.str_,
                "int": self.any_int,
                "float": self.float_,
                "bool": self.bool_,
                "dict[str, str]": self.str_map,
            }
            reader = readers.get(base)
            if reader is None:  # pragma: no cover - only when a new field type is added
                raise TypeError(f"session_format cannot read {where}.{f.name} of type {base}")
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
_ANNOTATION_KEYS = ("annotator", "time", "label", "scores", "note")
_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_AT_END = " (at end of document)"


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
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _POSITION.search(message)
        if match:
            where = f"{file}:{match.group(1)}:{match.group(2)}"
            message = message[: match.start()]
        elif message.endswith(_AT_END):
            line = text.count("\n") + 1
            column = len(text) - (text.rfind("\n") + 1) + 1
            where = f"{file}:{line}:{column}"
            message = message[: -len(_AT_END)] + " at the end of the file"
        else:
            where = str(file)
        raise SessionError(
            f"{where}: not valid TOML ({message}): the session file is corrupt or truncated"
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
