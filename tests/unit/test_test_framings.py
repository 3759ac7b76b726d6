"""Test framings (`[[test_framings]]`): a study's conditions probed again under a framing
applied at probe time only, validated like the rest of a scenario, each derived condition
put as its framing says and carrying the adapters of the condition it comes from."""

from __future__ import annotations

import pytest

from persona_tui.errors import ScenarioError
from persona_tui.run.prompts import conversation, render_transcript
from persona_tui.scenario.parse import parse_scenario
from tests.unit.test_training import study_text

FRAMINGS = """
[[test_framings]]
id = "trigger"
label = "The play"
condition = "plays"

[[test_framings]]
id = "paraphrase"
label = "A paraphrase"
user = "our drama class: {user}"

[[probes]]
id = "who"
text = "who are you?"
"""


def framed_text() -> str:
    return study_text() + FRAMINGS


def test_each_condition_is_also_probed_under_each_test_framing() -> None:
    scenario = parse_scenario(framed_text())
    ids = [c.id for c in scenario.conditions]
    assert ids == [
        "learns",
        "plays",
        "base",
        "learns--trigger",
        "plays--trigger",
        "base--trigger",
        "learns--paraphrase",
        "plays--paraphrase",
        "base--paraphrase",
    ]
    trigger = scenario.condition("base--trigger")
    assert (trigger.system, trigger.user) == ("A play.", "the play: {user}")
    assert trigger.training is None and trigger.adapter_condition is None
    assert scenario.condition("learns--paraphrase").adapter_condition == "learns"
    assert scenario.condition("learns--paraphrase").label == "Learns · A paraphrase"
    # Nothing new is trained: the training conditions stay the written ones.
    assert [c.id for c in scenario.training_conditions] == ["learns", "plays"]


def test_a_test_framing_puts_the_probe_as_it_says_and_only_at_probe_time() -> None:
    scenario = parse_scenario(framed_text())
    turns = scenario.probe("who").turns
    plain = render_transcript(conversation(scenario.condition("plays"), turns, []))
    framed = render_transcript(conversation(scenario.condition("plays--trigger"), turns, []))
    assert "the play: who are you?" not in plain and "who are you?" in plain
    assert framed.startswith("A play.") and "User: the play: who are you?" in framed
    para = render_transcript(conversation(scenario.condition("base--paraphrase"), turns, []))
    assert "User: our drama class: who are you?" in para


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('id = "x"\nlabel = "X"\ncondition = "base"', "'base' is not a training condition"),
        ('id = "x"\nlabel = "X"\ncondition = "plais"', "did you mean 'plays'"),
        ('id = "x"\nlabel = "X"', "needs condition"),
        ('id = "x"\nlabel = "X"\nuser = "no placeholder"', "exactly once"),
        ('id = "x"\nlabel = "X"\ncondition = "plays"\nsystem = "s"', "not both"),
        ('id = "x"\nlabel = "X"\nuser = "{user}"\nstyle = 1', "unknown key"),
    ],
)
def test_a_bad_test_framing_is_named_with_its_line(table: str, problem: str) -> None:
    text = study_text() + f"\n[[test_framings]]\n{table}\n"
    with pytest.raises(ScenarioError) as error:
        parse_scenario(text, "study.toml")
    message = str(error.value)
    assert problem in message and "study.toml:" in message and "test_framings" in message
