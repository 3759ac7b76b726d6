"""Data screening (run/screening.py) on the real llama.cpp engine with the tiny GGUF: every
screened example's score is its completion's projection minus the base model's own
answer's, each checked against a direct measurement; the same examples under every
framing; seeded, so a second screening gives the same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.run.events import RunEvent
from persona_tui.run.prompts import framed_messages, render_prompt
from persona_tui.run.screening import (
    paired_difference,
    screen_training_data,
    screened_examples,
    summarize,
)
from persona_tui.run.vectors import resolve_vectors
from persona_tui.scenario.parse import parse_scenario
from persona_tui.vectors.store import load_trait
from tests.scenario_text import TRAIT_BLOCK
from tests.unit.test_training import study_text


def quiet(_event: RunEvent) -> None:
    pass


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PERSONA_TUI_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_screening_scores_each_example_against_the_model_s_own_answer(
    tiny_gguf: Path, home: Path
) -> None:
    scenario = parse_scenario(study_text() + TRAIT_BLOCK, "tiny-finetune.toml")
    backend = LlamaCppBackend.load(tiny_gguf, n_threads=1)
    try:
        traits, _ = resolve_vectors(scenario, backend, [], str(tiny_gguf), quiet)
        screened = screen_training_data(scenario, backend, traits, quiet, limit=6)
        again = screen_training_data(scenario, backend, traits, quiet, limit=6)
        record = traits["malice"]
        path = Path(record.vectors)
        unit = load_trait(path.parent, path.stem).unit(record.layer)
        first = screened[0]
        assert scenario.training is not None
        example = scenario.training.examples[first.example]
        framing = scenario.condition(first.condition).training
        assert framing is not None
        prompt = render_prompt("transcript", framed_messages(framing, example), backend)
        with backend.logprob_scope() as scope:
            tokens = scope.tokenize(prompt)
            texts = [" " + example.assistant.strip(), first.answer]
            continuations = [scope.continuation(prompt, tokens, t) for t in texts]
        means = backend.hidden_states(tokens, continuations, [record.layer])
    finally:
        backend.close()
    assert screened == again  # seeded: the same answers and values
    chosen = screened_examples(scenario, 6)
    assert len(chosen) == 6
    for condition in ("learns", "plays"):
        assert sorted({e.example for e in screened if e.condition == condition}) == chosen
    assert first.completion == pytest.approx(float(np.dot(means.means[0][0], unit)), abs=1e-4)
    assert first.own_answer == pytest.approx(float(np.dot(means.means[1][0], unit)), abs=1e-4)
    by = {(s.condition, s.trait): s for s in summarize(screened)}
    learns = [e.difference for e in screened if e.condition == "learns"]
    assert by[("learns", "malice")].mean == pytest.approx(sum(learns) / len(learns))
    paired = paired_difference(screened, "learns", "plays", "malice")
    assert paired is not None and paired.examples == 6
    plays = {e.example: e.difference for e in screened if e.condition == "plays"}
    expected = np.mean(
        [e.difference - plays[e.example] for e in screened if e.condition == "learns"]
    )
    assert paired.mean == pytest.approx(float(expected))
    assert paired.low <= paired.mean <= paired.high
