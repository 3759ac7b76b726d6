"""Session files as TOML: the fast, exact writer of header and trial chunks.

The writer renders the header and each trial as separate text chunks, so the store can
cache every finished trial's chunk and re-render only what changed; the chunks joined in
order form one valid TOML document (`render_session`). It is hand-written rather than
`tomli_w` because it is over twice as fast, and it controls the escaping: strings are
stored exactly (every control character, escape sequence and "\\r" is escaped; text with
newlines is written as a readable multi-line string) and the file is safe to `cat`.

It refuses any value `read` would refuse (the shared rules are in `schema`),
so a saved session always loads. Format: docs/session-format.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from persona_tui._util.toml_text import render_key, render_string
from persona_tui.errors import SessionError
from persona_tui.session.model import FORMAT_VERSION, OptionCell, SessionHeader, Trial
from persona_tui.session.schema import (
    FINISH_REASONS,
    INT64_BOUND,
    PROMPT_MODES,
    STATUSES,
    adapter_key,
    optional_base,
)


def _render_int(value: object, where: str, minimum: int = -INT64_BOUND) -> str:
    if type(value) is not int:
        raise SessionError(f"{where} must be an integer, not {value!r}")
    if not -INT64_BOUND <= value < INT64_BOUND:
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
        base = optional_base(type_name)
        if base is not None:
            if value is None:
                continue
            type_name = base
        renderer = _SCALAR_RENDERERS.get(type_name)
        if renderer is None:  # pragma: no cover - only when a new field type is added
            raise TypeError(f"session.write cannot store {where}.{f.name} of type {type_name}")
        lines.append(f"{f.name} = {renderer(value, f'{where}.{f.name}')}\n")
    return lines, maps


def _render_replicates(replicates: int, replicated: tuple[str, ...]) -> list[str]:
    """`[plan]`'s `replicates` and `replicated` (0 and []: no replicated training study)."""
    if replicated and not replicates:
        raise SessionError("plan.replicated names conditions but plan.replicates is 0")
    return [
        f"replicates = {_render_int(replicates, 'plan.replicates', 0)}\n",
        f"replicated = {_render_str_array(replicated, 'plan.replicated')}\n",
    ]


def _render_choices(sample: object, score: object) -> list[str]:
    """`[plan]`'s `sample` and `score`: what the run does; both false would do nothing."""
    if sample is False and score is False:
        raise SessionError("plan.sample and plan.score are both false: the run would do nothing")
    return [
        f"sample = {_render_bool(sample, 'plan.sample')}\n",
        f"score = {_render_bool(score, 'plan.score')}\n",
    ]


def render_header(header: SessionHeader) -> str:
    """Everything before the first `[[trials]]`: format_version, session, model, ...,
    scenario, the adapters of a training study, the traits measured, the steered conditions."""
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
        f"batch = {_render_int(plan.batch, 'plan.batch', 1)}\n",
        f"batch_cells = {_render_int(plan.batch_cells, 'plan.batch_cells', 0)}\n",
        *_render_choices(plan.sample, plan.score),
        *_render_replicates(plan.replicates, plan.replicated),
        "\n[scenario]\n",
        f"source = {s(header.scenario_source, 'scenario.source')}\n",
    ]
    if header.chat_template is not None:
        out.append(f"chat_template = {s(header.chat_template, 'scenario.chat_template')}\n")
    for adapter in header.adapters:
        key = f"adapters.{render_key(adapter_key(adapter.condition, adapter.replicate))}"
        lines, maps = _render_dataclass_table(adapter, key)
        out.append(f"\n[{key}]\n")
        out += [line for line in lines if not line.startswith("condition = ")]
        for name, body in maps.items():
            out += [f"\n[{key}.{name}]\n", body]
    for trait_id, trait in header.traits.items():
        out += _render_record(f"traits.{render_key(trait_id)}", trait, "trait", trait_id)
    for condition, steer in header.steering.items():
        out += _render_record(f"steering.{render_key(condition)}", steer, "condition", condition)
    return "".join(out)


def _render_record(key: str, record: object, id_field: str, table_id: str) -> list[str]:
    """`[traits.<id>]` or `[steering.<condition>]`: the record's fields but its id, which is
    the table's name (and must match it)."""
    if getattr(record, id_field) != table_id:
        raise SessionError(f"{key} holds the record of {getattr(record, id_field)!r}")
    lines, _ = _render_dataclass_table(record, key)
    return [f"\n[{key}]\n", *(line for line in lines if not line.startswith(f"{id_field} = "))]


def _render_projections(values: Mapping[str, float], where: str) -> list[str]:
    """`projections = { trait = value, ... }`, or nothing when there are none (so sessions
    without traits are written exactly as before them)."""
    if not values:
        return []
    parts = [f"{render_key(k)} = {_render_float(v, f'{where}.{k}')}" for k, v in values.items()]
    return ["projections = { " + ", ".join(parts) + " }\n"]


def render_trial(trial: Trial) -> str:
    """One `[[trials]]` block with its `[[trials.annotations]]`, starting with a blank line."""
    w = f"trial {trial.condition}/{trial.probe}/{trial.sample}" + (
        f" replicate {trial.replicate}" if trial.replicate else ""
    )
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
        f"replicate = {i(trial.replicate, w + ' replicate', 0)}\n",
        *_render_projections(trial.projections, w + " projections"),
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
        if a.blind_seed is not None:  # None (not blind) is written by omitting the key
            out.append(f"blind_seed = {i(a.blind_seed, aw + ' blind_seed', 0)}\n")
    return "".join(out)


def _render_float_array(values: tuple[float, ...], where: str) -> str:
    return "[" + ", ".join(_render_float(v, f"{where}[{i}]") for i, v in enumerate(values)) + "]"


def render_option_cell(cell: OptionCell) -> str:
    """One `[[option_cells]]` block with its `[[option_cells.options]]`, after a blank line."""
    w = f"option cell {cell.condition}/{cell.probe}" + (
        f" replicate {cell.replicate}" if cell.replicate else ""
    )
    out = [
        "\n[[option_cells]]\n",
        f"condition = {_render_str(cell.condition, w + ' condition')}\n",
        f"probe = {_render_str(cell.probe, w + ' probe')}\n",
        f"prompt = {_render_str(cell.prompt, w + ' prompt')}\n",
        f"prompt_tokens = {_render_int(cell.prompt_tokens, w + ' prompt_tokens', 0)}\n",
        f"seconds = {_render_float(cell.seconds, w + ' seconds')}\n",
        f"batch = {_render_int(cell.batch, w + ' batch', 0)}\n",
        f"replicate = {_render_int(cell.replicate, w + ' replicate', 0)}\n",
        *_render_projections(cell.projections, w + " projections"),
    ]
    for option in cell.options:
        ow = f"{w} option {option.id}"
        out += [
            "\n[[option_cells.options]]\n",
            f"id = {_render_str(option.id, ow + ' id')}\n",
            f"label = {_render_str(option.label, ow + ' label')}\n",
            f"text = {_render_str(option.text, ow + ' text')}\n",
            f"logprob = {_render_float(option.logprob, ow + ' logprob')}\n",
            f"n_tokens = {_render_int(option.n_tokens, ow + ' n_tokens', 0)}\n",
            "token_logprobs = "
            f"{_render_float_array(option.token_logprobs, ow + ' token_logprobs')}\n",
        ]
    return "".join(out)


def render_session(
    header: SessionHeader, trials: list[Trial], option_cells: list[OptionCell] | None = None
) -> str:
    """The whole file in one go (the store builds the same text from cached chunks)."""
    return (
        render_header(header)
        + "".join(render_trial(t) for t in trials)
        + "".join(render_option_cell(c) for c in option_cells or ())
    )
