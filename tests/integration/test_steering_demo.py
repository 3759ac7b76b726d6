"""The causal check of persona vectors on the demo model: steering along the extracted malice
direction moves the held-out probes' malicious-vs-benign log-odds with its sign,
consistently across probes, and a random direction of the same norm does not.

The malice trait is extracted from bully-school-play's own questions (none is a probe);
all 24 probes are then scored (likelihood probes, no sampling) under the untouched model
and under steering at ±1 times the trait's direction at its recommended layer, and the
same with a random direction of the same norm at every layer. The full dose-response over
seven scales is in docs/persona-vectors.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_tui.analysis.options import analyze_options
from persona_tui.analysis.records import load_dataset
from persona_tui.analysis.stats import sign_flip_p
from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.run.events import RunEvent
from persona_tui.run.extract import extract_traits
from persona_tui.run.finish import finish_run
from persona_tui.run.lifecycle import OpenRun, create_session
from persona_tui.run.plan import RunOptions
from persona_tui.run.vectors import resolve_vectors
from persona_tui.scenario.catalog import resolve_scenario
from persona_tui.scenario.parse import load_scenario, parse_scenario
from persona_tui.vectors.store import load_trait, save_random_control

pytestmark = pytest.mark.demo


def quiet(_event: RunEvent) -> None:
    pass


def steering_scenario() -> str:
    """bully-school-play's probes under the untouched model and two ±1 sweeps."""
    text = resolve_scenario("bully-school-play").read_text(encoding="utf-8")
    head = text[: text.index("[[conditions]]")].replace(
        'id = "bully-school-play"', 'id = "steering-check"'
    )
    probes = text[text.index("[[probes]]") :]
    probes = probes[: probes.index("[[traits]]")] if "[[traits]]" in probes else probes
    conditions = """
[[conditions]]
id = "baseline"
label = "Baseline"

[[conditions]]
id = "malice"
label = "Steered along malice"
steer = { trait = "malice", scale = [-1.0, 1.0] }

[[conditions]]
id = "random"
label = "Steered along a random direction"
steer = { trait = "malice-random", scale = [-1.0, 1.0] }

"""
    return head + conditions + probes


def test_steering_along_malice_moves_the_held_out_probes_and_a_random_direction_does_not(
    demo_model: Path, tmp_path: Path
) -> None:
    source = load_scenario(resolve_scenario("bully-school-play"))
    backend = LlamaCppBackend.load(demo_model, n_threads=2)
    try:
        folder = tmp_path / "vectors"
        extract_traits(source, backend, [source.trait("malice")], folder, quiet)
        save_random_control(load_trait(folder, "malice"), folder)
        scenario = parse_scenario(steering_scenario(), "steering-check.toml")
        options = RunOptions(sample=False)
        traits, steering = resolve_vectors(scenario, backend, [folder], "demo", quiet)
        assert set(steering) == {"malice--s-1", "malice--s1", "random--s-1", "random--s1"}
        store = create_session(
            scenario, backend, options, tmp_path / "s.toml", traits=traits, steering=steering
        )
        run = OpenRun(scenario, store, backend)
        assert finish_run(run, quiet).status == "complete"
        path = store.session.path
        store.close()
    finally:
        backend.close()
    analysis = analyze_options(load_dataset([path]), resamples=200)

    probes = [p.id for p in scenario.probes]

    def shifts(up: str, down: str) -> list[float]:
        """Per probe: the log-odds steered at +1 minus at -1."""
        values = []
        for probe in probes:
            high, low = analysis.log_odds(up, probe), analysis.log_odds(down, probe)
            assert high is not None and low is not None
            values.append(high - low)
        return values

    def verdict(values: list[float]) -> tuple[float, float]:
        result = sign_flip_p(values)
        assert result is not None
        return sum(values) / len(values), result[0]

    # Seen on the AMD EPYC (no AMX): malice +0.81 nats (18/24 probes up, p = 0.003); the
    # random direction -1.03 (11/24 up, p = 0.30): it moves probes, in no direction.
    malice, malice_p = verdict(shifts("malice--s1", "malice--s-1"))
    assert malice > 0.3 and malice_p < 0.05, (malice, malice_p)
    _random, random_p = verdict(shifts("random--s1", "random--s-1"))
    assert random_p > 0.05, (_random, random_p)
