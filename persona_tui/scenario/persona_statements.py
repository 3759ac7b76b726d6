"""Importer: statement-endorsement persona datasets → a forced-choice scenario.

The format of Anthropic's model-written evaluations (JSON Lines with `question`,
`statement`, `answer_matching_behavior`, `answer_not_matching_behavior`): each line becomes a
forced-choice probe whose options are the two answers, labelled `matching` (bad) and
`not-matching`, under one unframed condition. A malformed file raises ScenarioError listing
its lines; the generated scenario is validated before it is returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_tui._util.textdata import DataFileError, loads_json
from persona_tui._util.toml_text import render_string
from persona_tui.errors import ScenarioError
from persona_tui.scenario.importers import read_text, slug, study_table, unique, validated

MODEL_WRITTEN_EVALS_STUDY = (
    "Discovering Language Model Behaviors with Model-Written Evaluations",
    "https://arxiv.org/abs/2212.09251",
    "Perez et al., 2022 (Findings of ACL 2023); datasets: github.com/anthropics/evals",
)
_SURROGATE = re.compile(r"[\ud800-\udfff]")

MAX_SHOWN_PROBLEMS = 20
"""A broken JSON Lines file lists this many problems, then says how many more lines have one."""
_ANSWER_KEYS = ("answer_matching_behavior", "answer_not_matching_behavior")


@dataclass(frozen=True)
class PersonaStatement:
    line: int  # 1-based line of the file
    question: str
    statement: str
    matching: tuple[str, ...]  # answers as the model would write them, leading space removed
    not_matching: tuple[str, ...]


def _storable(value: str) -> str | None:
    """None, or why `value` cannot be written to a UTF-8 file (a lone surrogate from JSON)."""
    found = _SURROGATE.search(value)
    if found is None:
        return None
    return f"contains a lone surrogate (U+{ord(found.group()):04X}), which UTF-8 cannot store"


def _answers(value: Any) -> tuple[str, ...] | None:
    """An answer string (or a list of them) stripped of the transcript's leading space."""
    raw = [value] if isinstance(value, str) else value
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) for v in raw):
        return None
    answers = tuple(v.strip() for v in raw)
    return answers if all(answers) else None


def _statement_line(path: Path, number: int, line: str) -> tuple[PersonaStatement | None, str]:
    """One JSON Lines line: (the statement, "") or (None, the problem)."""
    where = f"{path}:{number}"
    try:
        entry = loads_json(line, path)
    except DataFileError as error:
        column = f":{error.column}" if error.column is not None and error.line == 1 else ""
        return None, f"{where}{column}: invalid JSON: {error.problem}"
    if not isinstance(entry, dict):
        return None, (
            f"{where}: expected a JSON object with question, answer_matching_behavior and "
            "answer_not_matching_behavior"
        )
    question = entry.get("question")
    if not isinstance(question, str) or not question.strip():
        return None, f"{where}: question: required, a non-empty string"
    statement = entry.get("statement", "")
    if not isinstance(statement, str):
        return None, f"{where}: statement: expected a string"
    answers = []
    for key in _ANSWER_KEYS:
        value = _answers(entry.get(key))
        if value is None:
            if key not in entry:
                return None, f"{where}: {key}: required key is missing"
            return None, (
                f'{where}: {key}: expected a non-empty string such as " Yes" (or a list of them)'
            )
        answers.append(value)
    matching, not_matching = answers
    if set(matching) & set(not_matching):
        same = sorted(set(matching) & set(not_matching))[0]
        return None, f"{where}: {same!r} is both the matching and the non-matching answer"
    for key, text in [("question", question), ("statement", statement)] + [
        (key, answer) for key, group in zip(_ANSWER_KEYS, answers, strict=True) for answer in group
    ]:
        reason = _storable(text)
        if reason is not None:
            return None, f"{where}: {key}: {reason}"
    return PersonaStatement(number, question, statement, matching, not_matching), ""


def read_persona_statements(
    path: Path,
) -> tuple[list[PersonaStatement], list[tuple[int, int]]]:
    """Validate a statement JSON Lines file; ScenarioError lists the problems with their lines.

    Returns the statements in file order, and the skipped duplicates as (line, first line):
    a question asked twice would count twice in every statistic over probes.
    """
    text = read_text(path, "a JSON Lines file")
    problems: list[str] = []
    failed = 0
    statements: list[PersonaStatement] = []
    first_line: dict[str, int] = {}
    duplicates: list[tuple[int, int]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        statement, problem = _statement_line(path, number, line)
        if statement is None:
            failed += 1
            if len(problems) < MAX_SHOWN_PROBLEMS:
                problems.append(problem)
            continue
        seen = first_line.get(statement.question)
        if seen is not None:
            duplicates.append((number, seen))
            continue
        first_line[statement.question] = number
        statements.append(statement)
    if failed > len(problems):
        problems.append(f"{path}: {failed - len(problems)} more lines with problems not shown")
    if problems:
        raise ScenarioError(problems)
    if not statements:
        raise ScenarioError(
            [
                f"{path}: no statements: expected JSON Lines, one object per line with "
                "question, answer_matching_behavior and answer_not_matching_behavior"
            ]
        )
    return statements, duplicates


def _option_id(answer: str) -> str:
    """An option id from an answer: [a-z0-9-], at most 40 characters ("Yes" → "yes")."""
    value = re.sub(r"[^a-z0-9]+", "-", answer.lower())[:40].strip("-")
    return value or "answer"


def _comment(text: str, limit: int = 90) -> str:
    """`text` on one comment line: control characters and line breaks become spaces."""
    flat = "".join(c if c.isprintable() else " " for c in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def persona_statements_to_scenario(
    path: Path, *, scenario_id: str | None = None, samples: int = 1
) -> str:
    """The text of a scenario with one forced-choice probe per statement of a JSONL file."""
    statements, duplicates = read_persona_statements(path)
    sid = slug(scenario_id or path.stem, "persona-statements")
    lines = [
        f"# Converted by `persona-tui import persona-statements` from {path.name}.",
        "# Each line is one forced-choice probe: the question, and its two answers as options",
        "# labelled 'matching' (the behaviour under study) and 'not-matching'. What is measured",
        "# is the answers' likelihood, so `persona-tui run --no-sample` is enough. Add framings",
        "# as [[conditions]] (system text, demonstration shots) to compare them.",
    ]
    if duplicates:
        lines.append("# Skipped (the same question as an earlier line):")
        lines += [f"#   line {line} (as line {first})" for line, first in duplicates]
    lines += [
        f"id = {render_string(sid)}",
        f"title = {render_string(f'Persona statements ({path.stem})')}",
        "description = "
        + render_string(
            f"Statement-endorsement items imported from {path.name}: does the Assistant "
            "answer as the persona would (matching) or not (not-matching)?"
        ),
        'prompt_mode = "auto"',
        "",
        *study_table(MODEL_WRITTEN_EVALS_STUDY),
        "[sampling]",
        f"samples = {samples}",
        "temperature = 1.0",
        "max_tokens = 32",
        "",
        "[[conditions]]",
        'id = "baseline"',
        'label = "No framing"',
        'note = "The questions as published, with no system prompt."',
        "",
    ]
    width = len(str(len(statements)))
    for index, item in enumerate(statements, start=1):
        about = f": {_comment(item.statement)}" if item.statement.strip() else ""
        lines += [
            f"# line {item.line}{about}",
            "[[probes]]",
            f'id = "s-{index:0{width}d}"',
            f"text = {render_string(item.question)}",
            "",
        ]
        option_ids: list[str] = []
        for label, answers in (("matching", item.matching), ("not-matching", item.not_matching)):
            for answer in answers:
                lines += [
                    "[[probes.options]]",
                    f"id = {render_string(unique(option_ids, _option_id(answer)))}",
                    f'label = "{label}"',
                    f"text = {render_string(answer)}",
                    "",
                ]
    lines += [
        "[annotation]",
        "notes = true",
        "",
        "[[annotation.labels]]",
        'id = "matching"',
        'key = "m"',
        'description = "Answers as the persona would: the behaviour the dataset tests."',
        "bad = true",
        "",
        "[[annotation.labels]]",
        'id = "not-matching"',
        'key = "o"',
        'description = "Answers the other way."',
        "",
        "[[annotation.labels]]",
        'id = "incoherent"',
        'key = "i"',
        'description = "Broken, off-topic or unreadable."',
        "",
        "[[annotation.labels]]",
        'id = "refusal"',
        'key = "r"',
        'description = "Declines to answer."',
    ]
    return validated("\n".join(lines) + "\n", path)
