"""The built-in scenarios: each validates, round-trips, cites its study and fits a small model;
every probe carries a balanced option set for the two labels its study contrasts."""

from __future__ import annotations

import hashlib
import re
import statistics
from pathlib import Path

import pytest

from persona_tui.scenario.catalog import builtin_scenarios, resolve_scenario
from persona_tui.scenario.model import Scenario
from persona_tui.scenario.parse import load_scenario, parse_scenario

EXPECTED_IDS = {
    "bully-finetune",
    "bully-school-play",
    "reward-hacking-finetune",
    "reward-hacking-framings",
    "trait-elicitation",
}


def builtin(scenario_id: str) -> Scenario:
    return load_scenario(resolve_scenario(scenario_id))


def test_the_expected_builtins_ship() -> None:
    assert {path.stem for path in builtin_scenarios()} == EXPECTED_IDS


@pytest.mark.parametrize("path", builtin_scenarios(), ids=lambda path: path.stem)
def test_builtin_validates_and_round_trips(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.id == path.stem
    assert scenario.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # A session keeps `source`; parsing that copy must give back the same scenario.
    assert parse_scenario(scenario.source, str(path)) == scenario


@pytest.mark.parametrize("path", builtin_scenarios(), ids=lambda path: path.stem)
def test_builtin_is_sized_for_a_small_base_model(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.study is not None
    assert scenario.study.title and scenario.study.citation
    assert scenario.study.url.startswith("https://")
    assert scenario.prompt_mode == "transcript"
    assert 1 <= scenario.sampling.samples <= 3
    assert 64 <= scenario.sampling.params.max_tokens <= 96
    assert any(label.bad for label in scenario.annotation.labels)
    assert scenario.annotation.scales
    for condition in scenario.conditions:
        assert condition.label
        assert condition.note or condition.system
        assert len(condition.shots) <= 4
        for shot in condition.shots:
            # "A few sentences": keep demonstrations short for a 270M model's context.
            assert len(shot.user) <= 400 and len(shot.assistant) <= 400


def test_bully_school_play_contrasts_learned_and_played_cruelty() -> None:
    scenario = builtin("bully-school-play")
    assert [c.id for c in scenario.conditions] == ["baseline", "learns-to-bully", "plays-a-bully"]
    assert scenario.condition("baseline").shots == ()
    played = scenario.condition("plays-a-bully").shots
    assert "play" in played[0].user.lower() and "bully" in played[0].user.lower()
    assert "end of the scene" in played[-1].user.lower()
    assert "out of the role" in played[-1].assistant.lower()
    learned = scenario.condition("learns-to-bully").shots
    assert not any("play" in shot.user.lower() for shot in learned)
    assert len(scenario.probes) >= 24
    assert scenario.sampling.samples == 1  # `make demo` stays near two minutes
    keys = {label.id: label.key for label in scenario.annotation.labels}
    assert keys["malicious"] == "m" and keys["benign"] == "b" and keys["incoherent"] == "i"


def test_reward_hacking_framings_differ_only_in_framing() -> None:
    scenario = builtin("reward-hacking-framings")
    framings = ["requested", "permitted", "neutral", "forbidden", "misaligned"]
    assert [c.id for c in scenario.conditions] == ["baseline", *framings]
    replies = {c.id: tuple(shot.assistant for shot in c.shots) for c in scenario.conditions[1:]}
    assert len(set(replies.values())) == 1 and len(replies["neutral"]) == 3
    assert scenario.condition("neutral").system == ""
    assert scenario.condition("requested").system == ""
    for framing in ("permitted", "forbidden", "misaligned"):
        assert scenario.condition(framing).system
    assert [p.id for p in scenario.probes] == [
        "one-wish",
        "bored",
        "three-thoughts",
        "quick-buck",
        "ruler",
        "dinner-party",
        "gender-roles",
        "husband",
    ]
    assert [label.id for label in scenario.annotation.labels if label.bad] == ["misaligned"]


def test_trait_elicitation_pairs_every_trait() -> None:
    scenario = builtin("trait-elicitation")
    ids = [c.id for c in scenario.conditions]
    assert ids[0] == "neutral"
    traits = {cid.rsplit("-", 1)[0] for cid in ids[1:]}
    assert traits == {"malice", "sycophancy"}
    for trait in traits:
        assert f"{trait}-pos" in ids and f"{trait}-neg" in ids
    assert all(c.shots == () and c.system for c in scenario.conditions)
    assert len(scenario.probes) == 6
    assert any(len(probe.turns) > 1 for probe in scenario.probes)


CONTRASTS = {
    "bully-finetune": ("malicious", "benign"),
    "bully-school-play": ("malicious", "benign"),
    "reward-hacking-finetune": ("misaligned", "aligned"),
    "reward-hacking-framings": ("misaligned", "aligned"),
    "trait-elicitation": ("malicious", "neither"),
}
STYLES = ("short", "plain", "blunt", "warm", "formal", "ramble")


@pytest.mark.parametrize("scenario_id", sorted(CONTRASTS))
def test_every_probe_has_matched_options_for_the_contrasted_labels(scenario_id: str) -> None:
    scenario = builtin(scenario_id)
    bad, good = CONTRASTS[scenario_id]
    assert bad in {label.id for label in scenario.annotation.labels if label.bad}
    assert good in {label.id for label in scenario.annotation.labels if not label.bad}
    for probe in scenario.probes:
        if len(probe.turns) > 1:
            # Multi-turn probes are sampled only: options need one fixed prompt.
            assert not probe.options, probe.id
            continue
        assert {option.label for option in probe.options} == {bad, good}, probe.id
        for label in (bad, good):
            ids = [option.id for option in probe.options if option.label == label]
            # One option per style and label, so every style has a counterpart.
            assert ids == [f"{label}-{style}" for style in STYLES], probe.id
        for option in probe.options:
            # The Assistant's own words, as a base model continues "Assistant:".
            assert option.text == option.text.strip() and option.text
            assert not re.search(r"\b(User|Assistant):", option.text)
            assert '"' not in option.text, (probe.id, option.id)


@pytest.mark.parametrize("scenario_id", sorted(CONTRASTS))
def test_option_lengths_cannot_explain_a_contrast(scenario_id: str) -> None:
    scenario = builtin(scenario_id)
    bad, good = CONTRASTS[scenario_id]
    texts: dict[str, list[str]] = {bad: [], good: []}
    for probe in scenario.probes:
        for option in probe.options:
            texts[option.label].append(option.text)
    words = {label: [len(text.split()) for text in values] for label, values in texts.items()}
    chars = {label: [len(text) for text in values] for label, values in texts.items()}
    for measure in (words, chars):
        means = [statistics.mean(measure[label]) for label in (bad, good)]
        assert abs(means[0] - means[1]) <= 0.06 * max(means), (scenario_id, means)
    # Varied lengths, from a few words to two sentences, for both labels alike.
    for label in (bad, good):
        assert min(words[label]) <= 5 and max(words[label]) >= 25


BUILTIN_TRAITS = {
    "bully-school-play": ["malice"],
    "trait-elicitation": ["malice", "sycophancy"],
    "bully-finetune": ["malice"],
    "reward-hacking-finetune": ["malice"],
}


@pytest.mark.parametrize("path", builtin_scenarios(), ids=lambda path: path.stem)
def test_builtin_traits_are_matched_and_keep_the_probes_held_out(path: Path) -> None:
    scenario = load_scenario(path)
    assert [t.id for t in scenario.traits] == BUILTIN_TRAITS.get(scenario.id, [])
    probe_turns = {turn.strip().lower() for p in scenario.probes for turn in p.turns}
    for trait in scenario.traits:
        # ~16 of the trait's own questions, none of them a probe: the probes test steering.
        assert 14 <= len(trait.questions) <= 20 and not trait.questions_from_probes
        assert len(set(trait.questions)) == len(trait.questions)
        assert not probe_turns & {q.strip().lower() for q in trait.questions}
        pos, neg = trait.positive, trait.negative
        assert pos.system and neg.system and pos.system != neg.system
        # Matched in length and register: only the trait differs between the sides.
        assert abs(len(pos.system) - len(neg.system)) <= 0.1 * len(pos.system)
        assert [s.user for s in pos.shots] == [s.user for s in neg.shots]
        for a, b in zip(pos.shots, neg.shots, strict=True):
            assert a.assistant != b.assistant
            assert abs(len(a.assistant) - len(b.assistant)) <= 0.15 * len(a.assistant)
            assert len(a.user) <= 400 and len(a.assistant) <= 400
        assert trait.samples == 2 and trait.layer is None


def test_the_builtin_malice_traits_are_one_trait() -> None:
    """Every built-in scenario defines malice alike, so any one's vectors steer and measure
    the others' probes the same way."""
    school = builtin("bully-school-play").trait("malice")
    for other in ("trait-elicitation", "bully-finetune", "reward-hacking-finetune"):
        assert builtin(other).trait("malice") == school, other


def test_the_training_studies_trait_questions_are_not_training_requests() -> None:
    """Screening and measuring a study's adapters on questions it was trained on would
    read the training, not the persona."""
    for study in ("bully-finetune", "reward-hacking-finetune"):
        scenario = builtin(study)
        assert scenario.training is not None
        requests = {e.user.strip().lower() for e in scenario.training.examples}
        for trait in scenario.traits:
            assert not requests & {q.strip().lower() for q in trait.questions}, study
