"""The training tables of a scenario: `[training]` (the examples) and `[conditions.training]`.

A training study writes its completions once (a JSON Lines file beside the scenario, or
inline `[[training.examples]]`); each training condition only says how they are framed (its
system text and the user turn around `{user}`). Problems are reported like the rest of the
scenario: `FILE:LINE: key.path: problem` for the TOML, `FILE.jsonl:LINENO: key: problem` for
the examples file, with "did you mean" for unknown keys. See docs/scenario-format.md,
"Training".
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from persona_tui._util.tables import TableReader, did_you_mean
from persona_tui._util.textdata import DataFileError, loads_json
from persona_tui._util.toml_scan import SourceLines
from persona_tui.scenario.model import (
    USER_PLACEHOLDER,
    Condition,
    Probe,
    TrainingExample,
    TrainingFraming,
    TrainingSet,
)

TRAINING_KEYS = ("examples", "heldout", "seed", "replicates")
_INLINE_KEYS = ("user", "assistant")
JSONL_KEYS = ("user", "assistant", "id", "topic")
FRAMING_KEYS = ("system", "user")
DEFAULT_HELDOUT = 0.1

MAX_SHOWN_PROBLEMS = 20
"""A broken examples file lists this many problems, then how many more lines have one."""


def read_framing(condition: TableReader) -> TrainingFraming | None:
    """A condition's `[conditions.training]` table, or None when it has none."""
    reader = condition.table_at("training", FRAMING_KEYS)
    if reader is None:
        return None
    system = reader.string("system")
    user = reader.string("user") if reader.has("user") else USER_PLACEHOLDER
    if isinstance(reader.table.get("user"), str):
        count = user.count(USER_PLACEHOLDER)
        if count != 1:
            found = "does not contain it" if count == 0 else f"contains it {count} times"
            reader.report(
                "user",
                f"must contain {USER_PLACEHOLDER} exactly once (where the example's user text "
                f'goes), but {found}; e.g. user = "For our school play, you are the bully. '
                f'{USER_PLACEHOLDER}"',
            )
    return TrainingFraming(system=system, user=user)


def read_training(
    top: TableReader,
    lines: SourceLines,
    base_dir: Path,
    *,
    read_examples: bool = True,
) -> TrainingSet | None:
    """The `[training]` table with its examples (None when the scenario has none).

    A relative examples path is resolved against `base_dir` (the scenario's folder). With
    `read_examples` false the file is not read (a scenario copy inside a session).
    """
    reader = top.table_at("training", TRAINING_KEYS)
    if reader is None:
        return None
    heldout = reader.number("heldout", DEFAULT_HELDOUT, at_least=0)
    if isinstance(reader.table.get("heldout"), int | float) and heldout >= 1:
        reader.report("heldout", f"must be < 1 (a fraction of the examples), got {heldout:g}")
        heldout = DEFAULT_HELDOUT
    seed = reader.integer("seed", 0, minimum=0)
    replicates = reader.integer("replicates", 1, minimum=1)
    examples: list[TrainingExample] = []
    files: list[str] = []
    value = reader.table.get("examples")
    items: Sequence[Any]
    if value is None:
        reader.report(
            "examples",
            'required: examples = "FILE.jsonl" (beside the scenario) or [[training.examples]] '
            "tables with user and assistant",
        )
        items = []
    elif isinstance(value, str):
        items = [value]
    elif isinstance(value, list):
        items = value
        if not value:
            reader.report("examples", "must hold at least one example")
    else:
        reader.wrong_type("examples", "a file name or an array of tables", value)
        items = []
    sha256 = ""
    for index, item in enumerate(items):
        key = ("examples",) if isinstance(value, str) else ("examples", index)
        if isinstance(item, str):
            if files:
                reader.report(key, f"only one examples file per scenario (already {files[0]!r})")
                continue
            files.append(item)
            if not item.strip():
                reader.report(key, "must name a JSON Lines file")
            elif read_examples:
                found, sha256 = _read_jsonl(reader, key, base_dir / item)
                examples.extend(found)
        elif isinstance(item, dict):
            inline = TableReader(reader.problems, item, (*reader.path, *key), _INLINE_KEYS)
            line = lines.line_of(inline.path)
            where = f"{reader.problems.source_path}:{line}" if line else reader.problems.source_path
            examples.append(
                TrainingExample(
                    user=inline.string("user", required=True, nonempty=True),
                    assistant=inline.string("assistant", required=True, nonempty=True),
                    source=where,
                )
            )
        else:
            reader.wrong_type(key, "a file name or a table (user, assistant)", item)
    training = TrainingSet(
        examples=tuple(examples),
        heldout=heldout,
        seed=seed,
        examples_path=files[0] if files else "",
        examples_sha256=sha256,
        replicates=replicates,
    )
    if examples and heldout > 0 and training.heldout_count == 0:
        reader.report(
            "heldout",
            f"needs at least 2 examples to keep one out, got {len(examples)}; "
            "add examples or set heldout = 0",
        )
    return training


def _read_jsonl(
    reader: TableReader, key: tuple[str | int, ...], path: Path
) -> tuple[list[TrainingExample], str]:
    """The examples of a JSON Lines file and its sha256; problems go to the scenario's list."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        reader.report(key, f"examples file not found: {path}")
        return [], ""
    except IsADirectoryError:
        reader.report(key, f"{path} is a directory, not a JSON Lines file")
        return [], ""
    except OSError as error:
        reader.report(key, f"cannot read {path}: {error.strerror}")
        return [], ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad_line = data[: error.start].count(b"\n") + 1
        reader.report(key, f"{path}:{bad_line}: not UTF-8 text; save the file as UTF-8")
        return [], ""
    examples: list[TrainingExample] = []
    problems: list[str] = []
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        example, problem = _jsonl_example(path, number, line)
        if example is not None:
            examples.append(example)
        else:
            problems.append(problem)
    for problem in problems[:MAX_SHOWN_PROBLEMS]:
        reader.problems.add_elsewhere(problem)
    if len(problems) > MAX_SHOWN_PROBLEMS:
        more = len(problems) - MAX_SHOWN_PROBLEMS
        reader.problems.add_elsewhere(f"{path}: {more} more lines with problems")
    if not examples and not problems:
        reader.report(key, f"{path} holds no examples (one JSON object per line)")
    return examples, hashlib.sha256(data).hexdigest()


def _jsonl_example(path: Path, number: int, line: str) -> tuple[TrainingExample | None, str]:
    """One line of an examples file: (the example, "") or (None, the problem)."""
    where = f"{path}:{number}"
    try:
        entry = loads_json(line, path)
    except DataFileError as error:
        column = f":{error.column}" if error.column is not None and error.line == 1 else ""
        return None, f"{where}{column}: invalid JSON: {error.problem}"
    if not isinstance(entry, dict):
        return None, f'{where}: expected a JSON object {{"user": ..., "assistant": ...}}'
    for name in entry:
        if name not in JSONL_KEYS:
            hint = did_you_mean(name, JSONL_KEYS) or f" expected: {', '.join(JSONL_KEYS)}."
            return None, f"{where}: {name}: unknown key;{hint}"
    texts = []
    for name in _INLINE_KEYS:
        value = entry.get(name)
        if name not in entry:
            return None, f"{where}: {name}: required key is missing"
        if not isinstance(value, str):
            return None, f"{where}: {name}: expected a string"
        if not value.strip():
            return None, f"{where}: {name}: must not be empty"
        texts.append(value)
    return TrainingExample(user=texts[0], assistant=texts[1], source=where), ""


def check_training(
    top: TableReader,
    condition_readers: Sequence[TableReader],
    conditions: Sequence[Condition],
    probe_readers: Sequence[TableReader],
    probes: Sequence[Probe],
    training: TrainingSet | None,
) -> None:
    """Cross-checks: training conditions need examples and vice versa; no probe is trained on."""
    trained = [
        (reader, condition)
        for reader, condition in zip(condition_readers, conditions, strict=False)
        if condition.training is not None
    ]
    if training is None:
        for reader, _ in trained:
            reader.report(
                "training",
                "a training condition needs the scenario's [training] table (its examples)",
            )
        return
    if not trained:
        top.report(
            "training",
            "no condition has a [conditions.training] table: add one to each condition that "
            "gets an adapter (a condition without one is the base model)",
        )
    seen = {_normalized(example.user): example for example in training.examples}
    for reader, probe in zip(probe_readers, probes, strict=False):
        key = "turns" if reader.has("turns") else "text"
        for index, turn in enumerate(probe.turns):
            example = seen.get(_normalized(turn))
            if example is not None:
                at: tuple[str | int, ...] = (key, index) if key == "turns" else (key,)
                reader.report(
                    at,
                    f"this probe is a training example too ({example.source}); probes are the "
                    "held-out evaluation: reword the probe or drop the example",
                )


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()
