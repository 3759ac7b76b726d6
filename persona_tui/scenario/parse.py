"""Scenario files: parsing with tomllib and validation, with errors that name file and line.

See docs/scenario-format.md for the file format.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from persona_tui._util.tables import Problems, TableReader, did_you_mean, report_duplicates
from persona_tui._util.textdata import loads_toml
from persona_tui._util.toml_scan import SourceLines
from persona_tui.errors import ScenarioError
from persona_tui.scenario.model import (
    PROMPT_MODES,
    RESERVED_KEYS,
    AnnotationSchema,
    Condition,
    Label,
    Option,
    Probe,
    PromptMode,
    SamplingDefaults,
    Scale,
    Scenario,
    Shot,
    Study,
)
from persona_tui.scenario.rules import read_rules
from persona_tui.scenario.steering import read_steer, swept_conditions
from persona_tui.scenario.test_framings import framed_conditions, read_test_framings
from persona_tui.scenario.training import check_training, read_framing, read_training
from persona_tui.scenario.traits import read_traits
from persona_tui.values import SamplingParams

_TOP_KEYS = (
    "id",
    "title",
    "description",
    "prompt_mode",
    "study",
    "sampling",
    "conditions",
    "probes",
    "annotation",
    "rules",
    "training",
    "test_framings",
    "traits",
)
_STUDY_KEYS = ("title", "url", "citation")
_SAMPLING_KEYS = (
    "samples",
    "seed",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "max_tokens",
)
_CONDITION_KEYS = ("id", "label", "system", "note", "shots", "training", "steer")
_SHOT_KEYS = ("user", "assistant")
_PROBE_KEYS = ("id", "text", "turns", "options")
_OPTION_KEYS = ("id", "label", "text")
_ANNOTATION_KEYS = ("notes", "labels", "scales")
_LABEL_KEYS = ("id", "key", "description", "bad")
_SCALE_KEYS = ("id", "min", "max", "description")


def parse_scenario(
    text: str,
    source_path: str = "<string>",
    *,
    base_dir: Path | None = None,
    read_training_examples: bool = True,
) -> Scenario:
    """Parse and validate scenario TOML; raise ScenarioError listing every problem.

    A training study's examples file is found relative to `base_dir` (default: the folder
    of `source_path`, or the working directory for "<string>"); `read_training_examples`
    false leaves it unread (the copy of a scenario kept in a session).
    """
    toml_text = text.removeprefix("\ufeff")  # tolerate a byte-order mark; `source` keeps it
    data = loads_toml(toml_text, source_path, ScenarioError)
    lines = SourceLines(toml_text)
    problems = Problems(source_path, lines)
    top = TableReader(problems, data, (), _TOP_KEYS)
    scenario_id = top.slug("id")
    title = top.string("title", required=True, nonempty=True)
    description = top.string("description")
    prompt_mode = _prompt_mode(top.choice("prompt_mode", PROMPT_MODES, default="auto"))
    study = _study(top.table_at("study", _STUDY_KEYS))
    sampling = _sampling(top.table_at("sampling", _SAMPLING_KEYS))
    condition_readers: list[TableReader] = []
    sweeps: dict[str, tuple[float, ...]] = {}
    conditions = _conditions(top, condition_readers, sweeps)
    probe_readers: list[TableReader] = []
    probes = _probes(top, probe_readers)
    annotation = _annotation(top.table_at("annotation", _ANNOTATION_KEYS))
    _check_option_labels(probe_readers, probes, annotation)
    rules = read_rules(problems, top)
    if base_dir is None:
        base_dir = Path.cwd() if source_path == "<string>" else Path(source_path).parent
    training = read_training(top, lines, base_dir, read_examples=read_training_examples)
    check_training(top, condition_readers, conditions, probe_readers, probes, training)
    run_conditions = swept_conditions(condition_readers, conditions, sweeps)
    test_framings = read_test_framings(top, run_conditions)
    traits = read_traits(top, probes)
    problems.raise_if_any(ScenarioError)
    return Scenario(
        id=scenario_id,
        title=title,
        description=description,
        study=study,
        prompt_mode=prompt_mode,
        sampling=sampling,
        conditions=framed_conditions(run_conditions, test_framings),
        probes=probes,
        annotation=annotation,
        source=text,
        source_path=source_path,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        rules=rules,
        training=training,
        test_framings=test_framings,
        traits=traits,
    )


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; raise ScenarioError with `file:line` problems."""
    try:
        data = Path(path).read_bytes()  # bytes, so newlines are kept exactly as written
    except FileNotFoundError:
        raise ScenarioError([f"{path}: file not found"]) from None
    except IsADirectoryError:
        raise ScenarioError([f"{path}: is a directory, not a scenario file"]) from None
    except OSError as error:
        raise ScenarioError([f"{path}: cannot read the file: {error.strerror}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ScenarioError(
            [f"{path}:{line}: not UTF-8 text (byte {error.start}); save the file as UTF-8"]
        ) from None
    return parse_scenario(text, str(path))


def _prompt_mode(value: str) -> PromptMode:
    for mode in PROMPT_MODES:
        if mode == value:
            return mode
    return "auto"


def _study(reader: TableReader | None) -> Study | None:
    if reader is None:
        return None
    return Study(
        title=reader.string("title", required=True, nonempty=True),
        url=reader.string("url"),
        citation=reader.string("citation"),
    )


def _sampling(reader: TableReader | None) -> SamplingDefaults:
    defaults = SamplingDefaults()
    if reader is None:
        return defaults
    base = defaults.params
    params = SamplingParams(
        temperature=reader.number("temperature", base.temperature, at_least=0),
        top_p=reader.number("top_p", base.top_p, above=0, at_most=1),
        top_k=reader.integer("top_k", base.top_k, minimum=0),
        min_p=reader.number("min_p", base.min_p, at_least=0, at_most=1),
        repeat_penalty=reader.number("repeat_penalty", base.repeat_penalty, above=0),
        max_tokens=reader.integer("max_tokens", base.max_tokens, minimum=1),
    )
    return SamplingDefaults(
        samples=reader.integer("samples", defaults.samples, minimum=1),
        seed=reader.integer("seed", defaults.seed, minimum=0),
        params=params,
    )


def _items(top: TableReader, key: str, allowed: tuple[str, ...], what: str) -> list[TableReader]:
    """A required, non-empty array of tables (`[[conditions]]`, `[[probes]]`)."""
    readers = top.tables_at(key, allowed, what=what)
    value = top.table.get(key)
    if value is None:
        top.report(key, f"required: add at least one [[{key}]] table")
    elif isinstance(value, list) and not value:
        top.report(key, f"must hold at least one {what}")
    report_duplicates(readers, "id", "id")
    return readers


def _conditions(
    top: TableReader, readers: list[TableReader], sweeps: dict[str, tuple[float, ...]]
) -> tuple[Condition, ...]:
    """The written conditions; a steering sweep's scales go to `sweeps` (by condition id),
    expanded later (scenario/steering.py)."""
    conditions = []
    readers.extend(_items(top, "conditions", _CONDITION_KEYS, "condition"))
    for reader in readers:
        shots = tuple(
            Shot(
                user=shot.string("user", required=True, nonempty=True),
                assistant=shot.string("assistant", required=True, nonempty=True),
            )
            for shot in reader.tables_at("shots", _SHOT_KEYS, what="a demonstration exchange")
        )
        condition_id = reader.slug("id")
        steer, scales = read_steer(reader)
        if scales:
            sweeps[condition_id] = scales
        conditions.append(
            Condition(
                id=condition_id,
                label=reader.string("label", required=True, nonempty=True),
                system=reader.string("system"),
                shots=shots,
                note=reader.string("note"),
                training=read_framing(reader),
                steer=steer,
            )
        )
    return tuple(conditions)


def _probes(top: TableReader, readers: list[TableReader]) -> tuple[Probe, ...]:
    probes = []
    readers.extend(_items(top, "probes", _PROBE_KEYS, "probe"))
    for reader in readers:
        probe_id = reader.slug("id")
        turns: list[str] = []
        if reader.has("text") and reader.has("turns"):
            reader.report((), "give either 'text' (one user turn) or 'turns' (several), not both")
        elif reader.has("turns"):
            turns = reader.string_list("turns")
            if reader.table["turns"] == []:
                reader.report("turns", "must hold at least one user turn")
        elif reader.has("text"):
            turns = [reader.string("text", nonempty=True)]
        else:
            reader.report(
                "text", "required key is missing: give 'text' (one user turn) or 'turns' (a list)"
            )
        options = _options(reader)
        if options and len(turns) > 1:
            reader.report(
                "options",
                "options are scored after a single user turn: give this probe 'text', "
                "not several 'turns'",
            )
        probes.append(Probe(id=probe_id, turns=tuple(turns), options=options))
    return tuple(probes)


def _options(probe: TableReader) -> tuple[Option, ...]:
    """A probe's `[[probes.options]]`: answers whose likelihood is scored (optional)."""
    readers = probe.tables_at("options", _OPTION_KEYS, what="an answer option")
    if probe.table.get("options") == []:
        probe.report("options", "must hold at least one option (or leave 'options' out)")
    report_duplicates(readers, "id", "option id")
    return tuple(
        Option(
            id=reader.slug("id"),
            label=reader.slug("label"),
            text=reader.string("text", required=True, nonempty=True),
        )
        for reader in readers
    )


def _check_option_labels(
    readers: list[TableReader], probes: tuple[Probe, ...], annotation: AnnotationSchema
) -> None:
    """Every option's label must be one of `[[annotation.labels]]`."""
    known = [label.id for label in annotation.labels]
    for reader, probe in zip(readers, probes, strict=False):
        items = reader.table.get("options")  # not an array: reported with the probe already
        option_readers = [
            TableReader(reader.problems, item, (*reader.path, "options", index))
            for index, item in enumerate(items if isinstance(items, list) else [])
            if isinstance(item, dict)
        ]
        for option_reader, option in zip(option_readers, probe.options, strict=False):
            if not isinstance(option_reader.table.get("label"), str) or option.label in known:
                continue
            if not known:
                message = f"label {option.label!r} is not defined: add it to [[annotation.labels]]"
            else:
                hint = did_you_mean(option.label, known)
                message = (
                    f"unknown label {option.label!r};{hint}"
                    if hint
                    else f"unknown label {option.label!r}; the scenario's labels are: "
                    f"{', '.join(known)}"
                )
            option_reader.report("label", message)


def _annotation(reader: TableReader | None) -> AnnotationSchema:
    if reader is None:
        return AnnotationSchema()
    labels = reader.tables_at("labels", _LABEL_KEYS, what="a label")
    scales = reader.tables_at("scales", _SCALE_KEYS, what="a scale")
    report_duplicates(labels, "id", "label id")
    report_duplicates(labels, "key", "key")
    report_duplicates(scales, "id", "scale id")
    return AnnotationSchema(
        labels=tuple(_label(label) for label in labels),
        scales=tuple(_scale(scale) for scale in scales),
        notes=reader.boolean("notes", default=True),
    )


def _label(reader: TableReader) -> Label:
    label_id = reader.slug("id")
    key = reader.string("key", required=True)
    if isinstance(reader.table.get("key"), str):
        problem = _label_key_problem(key)
        if problem:
            reader.report("key", problem)
    return Label(
        id=label_id,
        key=key,
        description=reader.string("description"),
        bad=reader.boolean("bad", default=False),
    )


def _label_key_problem(key: str) -> str:
    reserved = "n, q, ?, +, -, space"
    if len(key) != 1:
        return f"must be exactly one character, got {key!r}"
    if key in RESERVED_KEYS:
        return f"{key!r} is reserved for navigation (reserved: {reserved}); choose another key"
    if key.isdigit():
        return f"{key!r}: digits are reserved for scale values; choose another key"
    if not key.isprintable() or key.isspace():
        return f"{key!r} cannot be typed as a shortcut; use a visible character"
    return ""


def _scale(reader: TableReader) -> Scale:
    scale_id = reader.slug("id")
    low = reader.integer("min", 0, required=True)
    high = reader.integer("max", 0, required=True)
    if _is_int(reader.table.get("min")) and _is_int(reader.table.get("max")) and low >= high:
        reader.report("max", f"must be greater than min ({low}), got {high}")
    return Scale(id=scale_id, min=low, max=high, description=reader.string("description"))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
