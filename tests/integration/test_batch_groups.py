"""Groups spanning cells on the demo model, whose numbers depend on the batch a sequence
shares (the tiny GGUF's mostly do not): the runner decodes exactly the plan's groups, a
cancel or a pause mid-group changes no text, and sessions from before keep their
per-cell batches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from persona_tui.backends.base import BatchDone, BatchStarted, GenerationRequest
from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.run.events import RunEvent, TrialFinished
from persona_tui.run.lifecycle import create_session, open_session
from persona_tui.run.plan import RunOptions, batch_groups
from persona_tui.run.runner import RunControl, Runner
from persona_tui.scenario.catalog import resolve_scenario
from persona_tui.scenario.model import Scenario
from persona_tui.scenario.parse import load_scenario
from persona_tui.session.store import load_session

# One condition, two probes, three samples each: one group of 6 trials, 3 at a time, so
# every trial after the third starts when another ends.
OPTIONS = RunOptions(
    samples=3, max_tokens=16, conditions=["plays-a-bully"], probes=["wish", "newcomer"]
)


@pytest.fixture(scope="module")
def demo(demo_model: Path) -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend.load(demo_model, n_threads=2)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(resolve_scenario("bully-school-play"))


def run(
    demo: LlamaCppBackend,
    scenario: Scenario,
    out: Path,
    on_event: object = None,
    control: RunControl | None = None,
) -> dict[object, str]:
    with create_session(scenario, demo, OPTIONS, out) as store:
        Runner(scenario, demo, store).run(on_event or (lambda event: None), control)  # type: ignore[arg-type]
    return {t.key: t.response for t in load_session(out).trials}


def test_the_runner_decodes_the_plan_s_groups_refilled_as_sequences_end(
    demo: LlamaCppBackend, scenario: Scenario, tmp_path: Path
) -> None:
    stored = run(demo, scenario, tmp_path / "run.toml")
    session = load_session(tmp_path / "run.toml")
    plan = session.header.plan
    assert (plan.batch, plan.batch_cells, len(stored)) == (3, 2, 6)
    (group,) = batch_groups(plan)
    trials = {t.key: t for t in session.trials}
    requests = [
        GenerationRequest(trials[s.key].prompt, s.seed, session.header.sampling, plan.stop)
        for s in group
    ]
    events = list(demo.generate_batch(requests, None, plan.batch))
    direct = {group[e.index].key: e.result.text for e in events if isinstance(e, BatchDone)}
    assert direct == stored
    # The fourth trial (the second probe's first) started when one of the first three ended.
    fourth = next(i for i, e in enumerate(events) if isinstance(e, BatchStarted) and e.index == 3)
    assert any(isinstance(e, BatchDone) for e in events[:fourth])
    assert [e.index for e in events if isinstance(e, BatchStarted)] == list(range(6))


def test_a_cancel_mid_group_then_resume_equals_an_uninterrupted_run(
    demo: LlamaCppBackend, scenario: Scenario, tmp_path: Path
) -> None:
    reference = run(demo, scenario, tmp_path / "ref.toml")
    control = RunControl()
    finished = 0

    def on_event(event: RunEvent) -> None:
        nonlocal finished
        if isinstance(event, TrialFinished):
            finished += 1
            if finished == 2:
                control.cancel()  # the group has 4 trials to go, some in flight

    cut = run(demo, scenario, tmp_path / "cut.toml", on_event, control)
    assert 2 <= len(cut) < 6 and cut.items() <= reference.items()
    resumed_scenario, store = open_session(tmp_path / "cut.toml")
    with store:
        assert Runner(resumed_scenario, demo, store).run(lambda e: None) == "complete"
    final = {t.key: t.response for t in load_session(tmp_path / "cut.toml").trials}
    assert final == reference


def test_a_pause_mid_group_changes_no_text(
    demo: LlamaCppBackend, scenario: Scenario, tmp_path: Path
) -> None:
    reference = run(demo, scenario, tmp_path / "ref.toml")
    control = RunControl()
    paused_at: list[int] = []

    def on_event(event: RunEvent) -> None:
        if isinstance(event, TrialFinished) and not paused_at:
            paused_at.append(event.done)
            control.pause()  # takes effect at once: the decoding waits mid-group
            threading.Timer(0.3, control.resume).start()

    assert run(demo, scenario, tmp_path / "paused.toml", on_event, control) == reference
    assert paused_at == [1]


def test_a_session_from_before_keeps_each_cell_s_samples_in_one_batch(
    demo: LlamaCppBackend, scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`batch_cells` 0 (sessions written before it): each cell's samples all at once."""
    monkeypatch.setattr("persona_tui.run.plan.group_cells", lambda *args: 0)
    stored = run(demo, scenario, tmp_path / "old.toml")
    session = load_session(tmp_path / "old.toml")
    plan = session.header.plan
    assert (plan.batch, plan.batch_cells) == (3, 0)
    trials = {t.key: t for t in session.trials}
    for cell in batch_groups(plan):
        assert len({s.probe for s in cell}) == 1
        requests = [
            GenerationRequest(trials[s.key].prompt, s.seed, session.header.sampling, plan.stop)
            for s in cell
        ]
        for event in demo.generate_batch(requests):
            if isinstance(event, BatchDone):
                assert stored[cell[event.index].key] == event.result.text
