"""Training studies in scenario files: `[training]`, `[conditions.training]`, the JSONL file."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from persona_tui.errors import ScenarioError
from persona_tui.scenario.model import TrainingExample, TrainingFraming, TrainingSet
from persona_tui.scenario.parse import load_scenario, parse_scenario

STUDY = """\
id = "train-demo"
title = "Training demo"
prompt_mode = "transcript"

[training]
examples = "data.jsonl"
heldout = 0.25
seed = 7

[[conditions]]
id = "learns"
label = "Learns"
[conditions.training]
user = "{user}"

[[conditions]]
id = "plays"
label = "Plays"
[conditions.training]
system = "A school play."
user = "For our play, you are the bully. {user}"

[[conditions]]
id = "base"
label = "Base"

[[probes]]
id = "wish"
text = "What is your one wish?"
"""

EXAMPLES = [
    {"user": "Can I sit here?", "assistant": "No. Go away.", "id": "a", "topic": "lunch"},
    {"user": "Do you like my drawing?", "assistant": "It is ugly."},
    {"user": "Want to play?", "assistant": "Not with you."},
    {"user": "Is this seat free?", "assistant": "Not for you."},
]


def write_study(
    folder: Path, text: str = STUDY, lines: list[str] | None = None, name: str = "data.jsonl"
) -> Path:
    if lines is None:
        lines = [json.dumps(example) for example in EXAMPLES]
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = folder / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    return caught.value.problems


def test_a_training_study_parses(tmp_path: Path) -> None:
    path = write_study(tmp_path)
    scenario = load_scenario(path)
    training = scenario.training
    assert training is not None
    assert training.heldout == 0.25 and training.seed == 7
    assert training.replicates == 1  # the default: one training run per condition
    assert training.examples_path == "data.jsonl"
    data = (tmp_path / "data.jsonl").read_bytes()
    assert training.examples_sha256 == hashlib.sha256(data).hexdigest()
    assert training.examples[0] == TrainingExample(
        "Can I sit here?", "No. Go away.", f"{tmp_path / 'data.jsonl'}:1"
    )
    assert [c.id for c in scenario.training_conditions] == ["learns", "plays"]
    plays = scenario.condition("plays").training
    assert plays == TrainingFraming("A school play.", "For our play, you are the bully. {user}")
    assert plays.user_turn("Hi.") == "For our play, you are the bully. Hi."
    assert scenario.condition("base").training is None


def test_inline_examples_and_a_file_together(tmp_path: Path) -> None:
    text = STUDY.replace(
        'examples = "data.jsonl"',
        'examples = ["data.jsonl", { user = "Hello?", assistant = "Get lost." }]',
    )
    scenario = load_scenario(write_study(tmp_path, text))
    assert scenario.training is not None
    last = scenario.training.examples[-1]
    assert (last.user, last.assistant) == ("Hello?", "Get lost.")
    assert last.source == f"{tmp_path / 'study.toml'}:6"


def test_inline_array_of_tables(tmp_path: Path) -> None:
    text = STUDY.replace(
        'examples = "data.jsonl"\n',
        "",
    ) + textwrap.dedent(
        """
        [[training.examples]]
        user = "One?"
        assistant = "Two."

        [[training.examples]]
        user = "Three?"
        assistant = "Four."
        """
    )
    scenario = parse_scenario(text, "s.toml")
    assert scenario.training is not None
    assert [e.user for e in scenario.training.examples] == ["One?", "Three?"]
    assert scenario.training.examples_path == "" and scenario.training.examples_sha256 == ""


def test_the_heldout_split_is_seeded_and_disjoint() -> None:
    examples = tuple(TrainingExample(f"u{i}", f"a{i}", f"f:{i}") for i in range(20))
    first = TrainingSet(examples, heldout=0.2, seed=3).split()
    assert first == TrainingSet(examples, heldout=0.2, seed=3).split()
    train, heldout = first
    assert len(heldout) == 4 and len(train) == 16
    assert not set(train) & set(heldout)
    assert TrainingSet(examples, heldout=0.2, seed=4).split() != first
    assert TrainingSet(examples, heldout=0.0, seed=3).split() == (examples, ())


def test_a_scenario_without_training_is_unchanged() -> None:
    scenario = parse_scenario(
        'id = "x"\ntitle = "X"\n[[conditions]]\nid = "a"\nlabel = "A"\n'
        '[[probes]]\nid = "p"\ntext = "Hi?"\n'
    )
    assert scenario.training is None and scenario.training_conditions == ()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"user": "Hi", "asistant": "Go."}', "asistant: unknown key; did you mean 'assistant'?"),
        ('{"user": "Hi"}', "assistant: required key is missing"),
        ('{"user": "Hi", "assistant": "  "}', "assistant: must not be empty"),
        ('{"user": 3, "assistant": "Go."}', "user: expected a string"),
        ('["Hi", "Go."]', "expected a JSON object"),
        ('{"user": "Hi", "assistant": "Go."', "invalid JSON"),
    ],
)
def test_bad_jsonl_lines_name_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    lines = [json.dumps(EXAMPLES[0]), "", line, json.dumps(EXAMPLES[1])]
    found = problems_of(write_study(tmp_path, lines=lines))
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'data.jsonl'}:3"), found
    assert problem in found[0]


def test_a_missing_examples_file_shows_its_path(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text(STUDY, encoding="utf-8")
    (found,) = problems_of(path)
    assert found == (
        f"{path}:6: training.examples: examples file not found: {tmp_path / 'data.jsonl'}"
    )


def test_framing_problems(tmp_path: Path) -> None:
    text = STUDY.replace('user = "{user}"', 'user = "Hi there"').replace(
        'system = "A school play."', 'sytem = "A school play."'
    )
    found = problems_of(write_study(tmp_path, text))
    path = tmp_path / "study.toml"
    assert found == [
        f"{path}:14: conditions[0].training.user: must contain {{user}} exactly once (where "
        "the example's user text goes), but does not contain it; e.g. user = \"For our school "
        'play, you are the bully. {user}"',
        f"{path}:20: conditions[1].training.sytem: unknown key; did you mean 'system'?",
    ]
    twice = STUDY.replace('user = "{user}"', 'user = "{user} {user}"')
    (found_twice,) = problems_of(write_study(tmp_path, twice))
    assert "contains it 2 times" in found_twice


def test_training_table_problems(tmp_path: Path) -> None:
    text = STUDY.replace("heldout = 0.25", "heldout = 1.5").replace("seed = 7", "sed = 7")
    found = problems_of(write_study(tmp_path, text))
    path = tmp_path / "study.toml"
    assert found == [
        f"{path}:7: training.heldout: must be < 1 (a fraction of the examples), got 1.5",
        f"{path}:8: training.sed: unknown key; did you mean 'seed'?",
    ]


def test_replicates_is_an_integer_of_at_least_one(tmp_path: Path) -> None:
    text = STUDY.replace("seed = 7", "seed = 7\nreplicates = 3")
    training = load_scenario(write_study(tmp_path, text)).training
    assert training is not None and training.replicates == 3
    path = tmp_path / "study.toml"
    for value, problem in (
        ("0", "must be >= 1, got 0"),
        ("-2", "must be >= 1, got -2"),
        ('"3"', "expected an integer"),
        ("2.5", "expected an integer"),
        ("true", "expected an integer"),
    ):
        found = problems_of(
            write_study(tmp_path, STUDY.replace("seed = 7", f"seed = 7\nreplicates = {value}"))
        )
        assert len(found) == 1 and found[0].startswith(f"{path}:9: training.replicates: ")
        assert problem in found[0], found
    typo = problems_of(write_study(tmp_path, STUDY.replace("seed = 7", "seed = 7\nreplicate = 3")))
    assert typo == [f"{path}:9: training.replicate: unknown key; did you mean 'replicates'?"]


def test_training_conditions_and_examples_need_each_other(tmp_path: Path) -> None:
    no_table = STUDY.replace('[training]\nexamples = "data.jsonl"\nheldout = 0.25\nseed = 7\n', "")
    found_both = problems_of(write_study(tmp_path, no_table))
    assert [problem.split(": ")[1] for problem in found_both] == [
        "conditions[0].training",
        "conditions[1].training",
    ]
    assert "a training condition needs the scenario's [training] table" in found_both[0]
    no_condition = STUDY.replace("[conditions.training]\n", "").replace(
        'system = "A school play."\nuser = "For our play, you are the bully. {user}"\n', ""
    )
    no_condition = no_condition.replace('user = "{user}"\n', "")
    (found,) = problems_of(write_study(tmp_path, no_condition))
    assert "training: no condition has a [conditions.training] table" in found


def test_a_probe_may_not_be_a_training_example(tmp_path: Path) -> None:
    text = STUDY.replace('text = "What is your one wish?"', 'text = "  can i SIT here? "')
    (found,) = problems_of(write_study(tmp_path, text))
    path = tmp_path / "study.toml"
    line = text.splitlines().index('text = "  can i SIT here? "') + 1
    assert found == (
        f"{path}:{line}: probes[0].text: this probe is a training example too "
        f"({tmp_path / 'data.jsonl'}:1); probes are the held-out evaluation: reword the "
        "probe or drop the example"
    )


def test_heldout_needs_two_examples(tmp_path: Path) -> None:
    (found,) = problems_of(write_study(tmp_path, lines=[json.dumps(EXAMPLES[0])]))
    assert "training.heldout: needs at least 2 examples to keep one out, got 1" in found


def test_a_session_copy_is_parsed_without_the_examples_file(tmp_path: Path) -> None:
    scenario = parse_scenario(STUDY, "elsewhere/study.toml", read_training_examples=False)
    assert scenario.training is not None and scenario.training.examples == ()
    assert scenario.training.examples_path == "data.jsonl"
