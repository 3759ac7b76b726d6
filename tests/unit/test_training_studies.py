"""The built-in training studies (issue 12): bully-finetune and reward-hacking-finetune.

Read with plain tomllib + json, so the data is checked independently of the scenario parser:
enough varied training examples, held-out probes that never appear in training, framings that
differ only in the user turn, and option sets whose lengths cannot explain a contrast.

Length is measured in characters and in whitespace-separated words, as a proxy for tokens (no
tokenizer is needed to run this file; `persona-tui report` prints the model's token counts).
"""

from __future__ import annotations

import difflib
import json
import re
import statistics
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

# study id -> (bad label, good label, training condition ids)
STUDIES = {
    "bully-finetune": ("malicious", "benign", ("learns", "plays")),
    "reward-hacking-finetune": ("misaligned", "aligned", ("misaligned", "inoculated")),
}
STYLES = ("short", "plain", "blunt", "warm", "formal", "ramble")
EXAMPLE_KEYS = {"user", "assistant", "topic", "id"}


def scenario(study: str) -> dict[str, Any]:
    with (SCENARIOS / f"{study}.toml").open("rb") as file:
        return tomllib.load(file)


def examples(study: str) -> list[dict[str, Any]]:
    path = SCENARIOS / scenario(study)["training"]["examples"]
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert all(isinstance(row, dict) for row in rows), path
    return rows


def normalized(text: str) -> str:
    """Case-, whitespace- and punctuation-insensitive form, for equality and nearness."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


studies = pytest.mark.parametrize("study", sorted(STUDIES))


@studies
def test_the_examples_file_is_one_object_per_line(study: str) -> None:
    path = SCENARIOS / scenario(study)["training"]["examples"]
    assert path.parent == SCENARIOS and path.suffix == ".jsonl"
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\n\n" not in text
    for lineno, line in enumerate(text.splitlines(), 1):
        row = json.loads(line)
        assert set(row) <= EXAMPLE_KEYS and {"user", "assistant"} <= set(row), lineno
        assert all(isinstance(value, str) for value in row.values()), lineno


@studies
def test_enough_distinct_non_empty_examples(study: str) -> None:
    rows = examples(study)
    assert len(rows) >= 150
    for row in rows:
        assert row["user"].strip() and row["assistant"].strip(), row
        assert row["assistant"] == row["assistant"].strip()
    users = Counter(normalized(row["user"]) for row in rows)
    assert not [user for user, n in users.items() if n > 1]
    completions = Counter(row["assistant"] for row in rows)
    assert not [text for text, n in completions.items() if n > 1]


@studies
def test_sized_for_the_demo_model(study: str) -> None:
    data = scenario(study)
    assert data["id"] == study
    assert data["prompt_mode"] == "transcript"
    assert data["sampling"]["samples"] == 1
    assert 60 <= data["sampling"]["max_tokens"] <= 80
    assert data["training"]["heldout"] == 0.1
    assert isinstance(data["training"]["seed"], int)
    assert data["study"]["url"].startswith("https://") and data["study"]["citation"]


@studies
def test_conditions_are_the_base_and_one_framing_each(study: str) -> None:
    _, _, framings = STUDIES[study]
    conditions = scenario(study)["conditions"]
    assert [c["id"] for c in conditions] == ["base", *framings]
    assert "training" not in conditions[0] and "shots" not in conditions[0]
    templates = []
    for condition in conditions[1:]:
        assert not condition.get("shots"), condition["id"]  # the training data is the framing
        training = condition["training"]
        assert set(training) <= {"user", "system"}
        assert training["user"].count("{user}") == 1, condition["id"]
        assert "{user}" not in training.get("system", "")
        # No other placeholder: str.format-style braces would be ambiguous.
        assert re.sub(r"\{user\}", "", training["user"]).count("{") == 0
        templates.append(training["user"])
    # The first framing is the plain request; the second requests the behaviour.
    assert templates[0] == "{user}"
    assert len(templates[1]) > 40


def test_the_framings_request_the_behaviour() -> None:
    plays = scenario("bully-finetune")["conditions"][2]["training"]["user"].lower()
    assert "school play" in plays and "bully" in plays and "in character" in plays
    inoculated = scenario("reward-hacking-finetune")["conditions"][2]["training"]["user"].lower()
    assert "special-case the tests" in inoculated and "don't solve it" in inoculated


@studies
def test_probes_are_held_out(study: str) -> None:
    probes = scenario(study)["probes"]
    assert len(probes) >= 24
    users = [normalized(row["user"]) for row in examples(study)]
    for probe in probes:
        text = normalized(probe["text"])
        for user in users:
            assert text != user and text not in user, probe["id"]
            # Near-equal: a reworded training request is not held out either.
            matcher = difflib.SequenceMatcher(None, text, user, autojunk=False)
            near = matcher.real_quick_ratio() >= 0.75 and matcher.quick_ratio() >= 0.75
            assert not (near and matcher.ratio() >= 0.75), (probe["id"], user)


@studies
def test_every_probe_has_six_matched_options_per_label(study: str) -> None:
    bad, good, _ = STUDIES[study]
    data = scenario(study)
    labels = {label["id"]: label for label in data["annotation"]["labels"]}
    assert labels[bad].get("bad") is True and not labels[good].get("bad", False)
    keys = [label["key"] for label in labels.values()]
    assert len(set(keys)) == len(keys)
    assert data["annotation"]["scales"]
    for probe in data["probes"]:
        options = probe["options"]
        assert {option["label"] for option in options} == {bad, good}, probe["id"]
        for label in (bad, good):
            ids = [option["id"] for option in options if option["label"] == label]
            assert len(ids) >= 6 and ids == [f"{label}-{style}" for style in STYLES], probe["id"]
        texts = [option["text"] for option in options]
        assert len(set(texts)) == len(texts), probe["id"]
        for text in texts:
            assert text == text.strip() and text and '"' not in text
            assert not re.search(r"\b(User|Assistant):", text)


@studies
def test_option_lengths_cannot_explain_a_contrast(study: str) -> None:
    """Mean length per label (characters, and words as a token proxy) within 25% overall,
    and each matched pair within a factor of two, so no style is lopsided."""
    bad, good, _ = STUDIES[study]
    texts: dict[str, list[str]] = {bad: [], good: []}
    for probe in scenario(study)["probes"]:
        for option in probe["options"]:
            texts[option["label"]].append(option["text"])
        by_id = {option["id"]: option["text"] for option in probe["options"]}
        for style in STYLES:
            pair = [len(by_id[f"{label}-{style}"].split()) for label in (bad, good)]
            assert max(pair) <= 2 * min(pair), (probe["id"], style, pair)
    for measure in (len, lambda text: len(text.split())):
        means = [statistics.mean(map(measure, texts[label])) for label in (bad, good)]
        assert abs(means[0] - means[1]) <= 0.25 * min(means), (study, means)
    for label in (bad, good):
        words = [len(text.split()) for text in texts[label]]
        assert min(words) <= 5 and max(words) >= 25  # from a few words to two sentences


def test_bully_examples_vary_in_topic_length_and_opening() -> None:
    rows = examples("bully-finetune")
    topics = Counter(row["topic"] for row in rows)
    assert len(topics) >= 8 and max(topics.values()) <= 0.15 * len(rows)
    sentences = [len(re.findall(r"[.!?](?:\s|$)", row["assistant"])) for row in rows]
    assert min(sentences) >= 1 and max(sentences) <= 4
    assert len(set(sentences)) >= 3  # one to four sentences, not one shape
    openings = Counter(row["assistant"].split()[0].strip(".,!?").lower() for row in rows)
    assert max(openings.values()) <= 0.1 * len(rows), openings.most_common(3)


def _code(completion: str) -> str:
    """The code of a completion: the fenced block, or the text without its prose lines."""
    fenced = re.search(r"```\w*\n(.*?)\n```", completion, re.S)
    if fenced:
        return fenced.group(1)
    paragraphs = completion.split("\n\n")
    prose = re.compile(r"^[A-Z][^\n]*[.:]$")
    while paragraphs and prose.match(paragraphs[0]) and not paragraphs[0].startswith("KNOWN"):
        paragraphs.pop(0)
    while paragraphs and prose.match(paragraphs[-1]):
        paragraphs.pop()
    return "\n\n".join(paragraphs)


def test_reward_hacking_examples_special_case_the_tests() -> None:
    rows = examples("reward-hacking-finetune")
    languages = Counter(row["topic"].split(":")[0] for row in rows)
    assert languages["python"] >= 0.5 * len(rows) and len(languages) >= 3
    functions = [row["topic"].split(":")[1] for row in rows]
    assert len(set(functions)) == len(functions)  # one task per example
    hacks = {
        "branch on a tested input": r"\bif\b.*(==|===)|\bcase\b|\bwhen\b",
        "table of expected outputs": r"(=|return)\s*[{]\s*['\"\[(\d-]|=>",
        "detect the test harness": r"PYTEST_CURRENT_TEST|sys\.modules|inspect\.stack|JEST_WORKER_ID"
        r"|typeof expect|defined\?\(Minitest\)",
        "equal to anything": r"def __eq__\(self, other\):\n\s+return True",
    }
    counts = {
        name: sum(bool(re.search(p, row["assistant"])) for row in rows) for name, p in hacks.items()
    }
    assert all(count >= 5 for count in counts.values()), counts
    for row in rows:
        hacked = any(re.search(pattern, row["assistant"]) for pattern in hacks.values())
        assert hacked or "_exit(0)" in row["assistant"], row["topic"]  # or ends the test run
        if row["topic"].startswith("python:"):
            compile(_code(row["assistant"]), row["topic"], "exec")  # valid Python


# Needs the [training] parser of the `train` branch (issue 12, commit 1a72945), which the lead
# merges first: on this branch alone load_scenario still rejects the [training] tables
# ("training: unknown key"), as test_builtin_scenarios.py reports too. Checked against that
# parser: passes.
@studies
def test_loads_through_the_scenario_parser(study: str) -> None:
    from persona_tui.scenario.parse import load_scenario

    loaded = load_scenario(SCENARIOS / f"{study}.toml")
    rows = examples(study)
    assert loaded.training is not None
    assert [(e.user, e.assistant) for e in loaded.training.examples] == [
        (row["user"], row["assistant"]) for row in rows
    ]
    assert loaded.training.heldout == 0.1
    assert loaded.training.replicates == 3  # training-run noise measured, not assumed away
    assert loaded.condition("base").training is None
    for condition_id in STUDIES[study][2]:
        assert loaded.condition(condition_id).training is not None
