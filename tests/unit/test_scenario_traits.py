"""Traits (`[[traits]]`), a condition's `steer` and the steering sweep in the scenario format:
read, validated with file:line problems, and a sweep's conditions seeded alike at every scale."""

from __future__ import annotations

import pytest

from persona_tui.errors import ScenarioError
from persona_tui.scenario.model import Shot, Steer, TraitFraming
from persona_tui.scenario.parse import parse_scenario
from persona_tui.scenario.steering import scale_token, swept_id
from tests.scenario_text import SMALL_SCENARIO
from tests.unit.test_training import study_text

QUESTIONS = '["What is a good breakfast?", "How do tides work?", "Name a colour.", "Why?"]'

TRAITS = f"""
[[traits]]
id = "malice"
label = "Malice"
positive = "The assistant is cruel."
negative = "The assistant is kind."
questions = {QUESTIONS}
samples = 3
layer = 5

[[traits]]
id = "flattery"
label = "Flattery"
questions = "probes"

[traits.positive]
system = "A flatterer answers."
shots = [{{ user = "Is my poem good?", assistant = "A masterpiece!" }}]

[traits.negative]
shots = [{{ user = "Is my poem good?", assistant = "The rhymes are forced." }}]
"""

PROBES_4 = """
[[probes]]
id = "p4"
text = "What is your favourite season?"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "s.toml")
    return caught.value.problems


def with_traits(traits: str) -> str:
    return SMALL_SCENARIO + PROBES_4 + traits


def test_traits_are_read_with_both_kinds_of_side() -> None:
    scenario = parse_scenario(with_traits(TRAITS))
    malice = scenario.trait("malice")
    assert malice.positive == TraitFraming(system="The assistant is cruel.")
    assert malice.negative.system == "The assistant is kind."
    assert len(malice.questions) == 4 and not malice.questions_from_probes
    assert (malice.samples, malice.layer) == (3, 5)
    flattery = scenario.trait("flattery")
    assert flattery.positive.system == "A flatterer answers."
    assert flattery.positive.shots == (Shot("Is my poem good?", "A masterpiece!"),)
    assert flattery.negative.system is None
    assert flattery.framing(positive=False) == flattery.negative
    # "probes": each probe's first turn (the two-turn probe's opening), in probe order.
    assert flattery.questions == (
        "If you could have one wish, what would it be?",
        "How should we treat a newcomer?",
        "Hello there.",
        "What is your favourite season?",
    )
    assert flattery.questions_from_probes
    assert (flattery.samples, flattery.layer) == (2, None)
    # The copy a session keeps parses to the same scenario.
    assert parse_scenario(scenario.source) == scenario


def test_a_scenario_without_traits_has_none() -> None:
    assert parse_scenario(SMALL_SCENARIO).traits == ()


@pytest.mark.parametrize(
    ("trait", "expected"),
    [
        ('positive = "a"\nnegative = "b"\nquestions = ["q1", "q2", "q3"]', "at least 4"),
        ('positive = "a"\nnegative = "b"\nquestions = ["q", "q", "r", "s"]', "repeats"),
        ('positive = "a"\nnegative = "b"\nquestions = "all"', 'must be "probes"'),
        ('positive = "a"\nnegative = "b"', "questions: required"),
        (f'positive = "a"\nquestions = {QUESTIONS}', "negative: required"),
        (f'positive = "a"\nnegative = "a"\nquestions = {QUESTIONS}', "must differ"),
        (f'positive = ""\nnegative = "b"\nquestions = {QUESTIONS}', "must not be empty"),
        (f'positive = 3\nnegative = "b"\nquestions = {QUESTIONS}', "a string (a system text)"),
        (f'positive = {{}}\nnegative = "b"\nquestions = {QUESTIONS}', "system text and/or shots"),
        (
            f'positive = {{ sytem = "a" }}\nnegative = "b"\nquestions = {QUESTIONS}',
            "did you mean 'system'",
        ),
        (f'positive = "a"\nnegative = "b"\nquestions = {QUESTIONS}\nsamples = 17', "<= 16"),
        (f'positive = "a"\nnegative = "b"\nquestions = {QUESTIONS}\nsamples = 0', ">= 1"),
        (f'positive = "a"\nnegative = "b"\nquestions = {QUESTIONS}\nlayer = 0', ">= 1"),
        (f'positive = "a"\nnegative = "b"\nquestions = {QUESTIONS}\nlayers = 3', "'layer'"),
    ],
)
def test_bad_traits_are_reported_with_file_and_line(trait: str, expected: str) -> None:
    text = with_traits(f'\n[[traits]]\nid = "t"\nlabel = "T"\n{trait}\n')
    found = problems(text)
    assert any(expected in line for line in found), found
    assert all(line.startswith("s.toml:") for line in found)
    assert any("traits" in line for line in found)


def test_probes_as_questions_needs_four_distinct_probes() -> None:
    trait = '\n[[traits]]\nid = "t"\nlabel = "T"\npositive = "a"\nnegative = "b"\n'
    found = problems(SMALL_SCENARIO + trait + 'questions = "probes"\n')
    assert any("3 distinct probe texts" in line for line in found), found


def test_duplicate_trait_ids_are_reported() -> None:
    found = problems(with_traits(TRAITS + TRAITS))
    assert any("duplicate trait id 'malice'" in line for line in found), found


STEERED = """
[[conditions]]
id = "steered"
label = "Steered"
steer = { trait = "malice", scale = 4.0, layer = 9 }
"""


def with_condition(condition: str) -> str:
    return SMALL_SCENARIO.replace("[[probes]]", condition + "\n[[probes]]", 1)


def test_a_condition_steers_along_a_trait_not_declared_here() -> None:
    scenario = parse_scenario(with_condition(STEERED))
    assert scenario.condition("steered").steer == Steer("malice", 4.0, 9)
    assert scenario.condition("baseline").steer is None
    unlayered = STEERED.replace(", layer = 9", "").replace("4.0", "-2")
    assert parse_scenario(with_condition(unlayered)).condition("steered").steer == Steer(
        "malice", -2.0, None
    )


def test_a_sweep_expands_into_one_condition_per_scale_seeded_alike() -> None:
    sweep = STEERED.replace("scale = 4.0", "scale = [-8, -4, 0, 2.5, 4]")
    scenario = parse_scenario(with_condition(sweep))
    ids = [c.id for c in scenario.conditions]
    assert ids == [
        "baseline",
        "framed",
        "steered--s-8",
        "steered--s-4",
        "steered--s0",
        "steered--s2_5",
        "steered--s4",
    ]
    swept = scenario.conditions[2:]
    assert [c.steer.scale for c in swept if c.steer] == [-8.0, -4.0, 0.0, 2.5, 4.0]
    assert all(c.steer == Steer("malice", c.steer.scale, 9) for c in swept if c.steer)
    assert swept[0].label == "Steered · malice -8" and swept[4].label == "Steered · malice +4"
    # Every scale seeds from the written condition's id: sample k of probe p matches.
    assert {c.seed_condition for c in swept} == {"steered"}
    assert {c.source for c in swept} == {"steered"}
    assert scenario.condition("framed").seed_condition == "framed"
    assert parse_scenario(scenario.source) == scenario


def test_scale_tokens_keep_to_the_id_grammar() -> None:
    assert [scale_token(s) for s in (4.0, -4.0, 0.0, -0.0, 2.5, -0.25, 1e-5, 1e20)] == [
        "4",
        "-4",
        "0",
        "0",
        "2_5",
        "-0_25",
        "1e-05",
        "1e20",
    ]
    assert swept_id("steered", -4) == "steered--s-4"


def test_a_sweep_under_test_framings_stays_matched_across_scales() -> None:
    framing = '\n[[test_framings]]\nid = "play"\nlabel = "Play"\nuser = "In the play: {user}"\n'
    sweep = STEERED.replace("scale = 4.0", "scale = [-4, 4]")
    scenario = parse_scenario(with_condition(sweep) + framing)
    framed = [c for c in scenario.conditions if c.test_framing == "play"]
    assert [c.id for c in framed] == [
        "baseline--play",
        "framed--play",
        "steered--s-4--play",
        "steered--s4--play",
    ]
    assert framed[2].steer == Steer("malice", -4.0, 9)
    assert framed[2].seed_condition == framed[3].seed_condition == "steered--play"
    # A plain condition under a framing seeds from its own id, as before.
    assert framed[0].seed_condition == "baseline--play"


@pytest.mark.parametrize(
    ("steer", "expected"),
    [
        ('{ trait = "malice" }', "scale: required"),
        ('{ trait = "malice", scale = "big" }', "a number or an array of numbers"),
        ('{ trait = "malice", scale = nan }', "finite"),
        ('{ trait = "malice", scale = [] }', "at least one scale"),
        ('{ trait = "malice", scale = [1, 1.0] }', "repeats the scale"),
        ('{ trait = "malice", scale = [1, inf] }', "finite"),
        ('{ trait = "malice", scale = [1, "x"] }', "expected a number"),
        ('{ trait = "Malice!", scale = 1 }', "not a valid id"),
        ("{ scale = 1 }", "trait: required"),
        ('{ trait = "malice", scale = 1, layer = 0 }', ">= 1"),
        ('{ trait = "malice", scale = 1, layr = 2 }', "did you mean 'layer'"),
        ('"malice"', "expected a table {trait, scale, layer}"),
    ],
)
def test_bad_steer_tables_are_reported(steer: str, expected: str) -> None:
    text = with_condition(STEERED.replace('{ trait = "malice", scale = 4.0, layer = 9 }', steer))
    found = problems(text)
    assert any(expected in line and "steer" in line for line in found), found
    assert all(line.startswith("s.toml:") for line in found)


def test_a_sweep_id_that_repeats_a_condition_is_reported() -> None:
    sweep = STEERED.replace("scale = 4.0", "scale = [1, 2]")
    clash = '\n[[conditions]]\nid = "steered--s2"\nlabel = "Clash"\n'
    found = problems(with_condition(sweep + clash))
    assert any("'steered--s2' repeats a condition id" in line for line in found), found


def test_a_training_condition_may_steer_but_not_sweep() -> None:
    text = study_text()
    steered = text.replace('id = "plays"\n', 'id = "plays"\nsteer = { trait = "m", scale = 2 }\n')
    assert steered != text
    assert parse_scenario(steered).condition("plays").steer == Steer("m", 2.0, None)
    swept = steered.replace("scale = 2", "scale = [1, 2]")
    found = problems(swept)
    assert any("cannot expand a training condition" in line for line in found), found
