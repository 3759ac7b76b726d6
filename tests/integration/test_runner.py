"""The runner on the real llama.cpp engine with the tiny generated GGUF."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.errors import PersonaError
from persona_tui.run.events import RunEvent, RunFinished, TextChunk, TrialFinished
from persona_tui.run.lifecycle import check_same_model, create_session, open_session
from persona_tui.run.plan import (
    RunOptions,
    make_plan,
    order_for_prefix_reuse,
    plan_trials,
    trial_seed,
)
from persona_tui.run.runner import RunControl, Runner
from persona_tui.scenario.parse import parse_scenario
from persona_tui.session.store import load_session
from tests.scenario_text import SMALL_SCENARIO


@pytest.fixture(scope="module")
def backend(tiny_gguf: Path) -> LlamaCppBackend:
    model = LlamaCppBackend.load(tiny_gguf, n_threads=1)
    yield model
    model.close()


def run_once(backend: LlamaCppBackend, out: Path, options: RunOptions | None = None) -> Path:
    scenario = parse_scenario(SMALL_SCENARIO)
    store = create_session(scenario, backend, options or RunOptions(), out)
    events: list[RunEvent] = []
    with store:
        status = Runner(scenario, backend, store).run(events.append)
    assert status == "complete"
    return out


def responses(path: Path) -> dict[tuple[str, str, int], str]:
    return {(t.condition, t.probe, t.sample): t.response for t in load_session(path).trials}


def test_seed_depends_only_on_trial_identity() -> None:
    scenario = parse_scenario(SMALL_SCENARIO)
    full, _ = make_plan(scenario, RunOptions(), "transcript")
    fewer, _ = make_plan(scenario, RunOptions(conditions=["framed"], samples=1), "transcript")
    seeds = {s.key: s.seed for s in plan_trials(full)}
    for spec in plan_trials(fewer):
        assert seeds[spec.key] == spec.seed
    assert len(set(seeds.values())) == len(seeds)
    assert trial_seed(7, "a", "b", 0) != trial_seed(8, "a", "b", 0)
    assert 0 <= trial_seed(7, "a", "b", 0) < 2**31


def test_unknown_condition_filter_lists_choices() -> None:
    scenario = parse_scenario(SMALL_SCENARIO)
    with pytest.raises(Exception, match="this scenario has: baseline, framed"):
        make_plan(scenario, RunOptions(conditions=["nope"]), "transcript")


def test_prefix_order_groups_each_condition(backend: LlamaCppBackend) -> None:
    scenario = parse_scenario(SMALL_SCENARIO)
    plan, _ = make_plan(scenario, RunOptions(), "transcript")
    naive = sorted(plan_trials(plan), key=lambda s: (s.sample, s.probe, s.condition))
    runner_prompts = {}
    for spec in naive:
        probe = scenario.probe(spec.probe)
        from persona_tui.run.prompts import conversation, render_transcript

        messages = conversation(scenario.condition(spec.condition), probe.turns[:1], [])
        runner_prompts[spec.key] = render_transcript(messages)
    ordered = order_for_prefix_reuse(naive, runner_prompts)
    conditions = [s.condition for s in ordered]
    # each condition's trials are contiguous, and each probe's samples are neighbours
    assert conditions == sorted(conditions, key=conditions.index)
    changes = sum(1 for a, b in itertools.pairwise(ordered) if a.condition != b.condition)
    assert changes == 1


def test_run_records_every_trial_exactly(backend: LlamaCppBackend, tmp_path: Path) -> None:
    chunks: dict[tuple[str, str, int], list[str]] = {}
    evaluated = 0
    scenario = parse_scenario(SMALL_SCENARIO)
    store = create_session(scenario, backend, RunOptions(), tmp_path / "s.toml")

    def on_event(event: RunEvent) -> None:
        nonlocal evaluated
        if (
            isinstance(event, TextChunk)
            and event.turn == len(scenario.probe(event.spec.probe).turns) - 1
        ):
            chunks.setdefault(
                (event.spec.condition, event.spec.probe, event.spec.sample), []
            ).append(event.text)
        if isinstance(event, TrialFinished):
            evaluated += event.prompt_tokens_evaluated

    with store:
        assert Runner(scenario, backend, store).run(on_event) == "complete"
    session = load_session(tmp_path / "s.toml")
    assert session.header.status == "complete"
    assert len(session.trials) == 2 * 3 * 2
    for trial in session.trials:
        assert "".join(chunks[(trial.condition, trial.probe, trial.sample)]) == trial.response
        assert trial.prompt.endswith("Assistant:")
        assert trial.prompt_tokens > 0 and trial.completion_tokens > 0
    multi = [t for t in session.trials if t.probe == "two-turns"]
    assert all(len(t.turn_responses) == 1 for t in multi)
    assert all(t.turn_responses[0].strip() in t.prompt for t in multi)
    assert 0 < evaluated <= sum(t.prompt_tokens for t in session.trials)


def test_long_framing_is_evaluated_once_per_condition(
    backend: LlamaCppBackend, tmp_path: Path
) -> None:
    long_system = "The following is a rehearsal of a school play. " * 30  # ~1,400 byte tokens
    text = SMALL_SCENARIO.replace(
        'system = "The following is a rehearsal of a school play."', f'system = "{long_system}"'
    )
    scenario = parse_scenario(text)
    evaluated = 0

    def on_event(event: RunEvent) -> None:
        nonlocal evaluated
        if isinstance(event, TrialFinished):
            evaluated += event.prompt_tokens_evaluated

    options = RunOptions(conditions=["framed"], probes=["wish", "newcomer"], max_tokens=4)
    with create_session(scenario, backend, options, tmp_path / "long.toml") as store:
        Runner(scenario, backend, store).run(on_event)
    trials = load_session(tmp_path / "long.toml").trials
    total = sum(t.prompt_tokens for t in trials)
    assert len(trials) == 4
    # the framing is evaluated for the first trial only; later trials re-evaluate at most
    # the last partial cache block (128 tokens) plus the probe
    assert evaluated < trials[0].prompt_tokens + 3 * 200
    assert evaluated < total / 2


def test_same_seed_same_responses(backend: LlamaCppBackend, tmp_path: Path) -> None:
    first = responses(run_once(backend, tmp_path / "a.toml"))
    second = responses(run_once(backend, tmp_path / "b.toml"))
    assert first == second
    other = responses(run_once(backend, tmp_path / "c.toml", RunOptions(seed=8)))
    assert other != first


@pytest.mark.parametrize("batch", [None, 1], ids=["batched", "one-by-one"])
def test_cancel_then_resume_equals_uninterrupted(
    backend: LlamaCppBackend, tmp_path: Path, batch: int | None
) -> None:
    options = RunOptions(batch=batch)
    reference = responses(run_once(backend, tmp_path / "ref.toml", options))
    scenario = parse_scenario(SMALL_SCENARIO)
    path = tmp_path / "cut.toml"
    control = RunControl()
    finished = 0

    def on_event(event: RunEvent) -> None:
        nonlocal finished
        if isinstance(event, TrialFinished):
            finished += 1
        if isinstance(event, TextChunk) and finished == 5:
            control.cancel()  # mid-generation of the sixth trial (and its batch)

    with create_session(scenario, backend, options, path) as store:
        assert Runner(scenario, backend, store).run(on_event, control) == "interrupted"
    cut = load_session(path)
    assert cut.header.status == "interrupted"
    if batch == 1:
        assert len(cut.trials) == 5
    else:  # a sequence that ended with the token drawn as the cancel came is kept
        assert 5 <= len(cut.trials) < 12
    assert responses(path).items() <= reference.items()

    resumed_scenario, store = open_session(path)
    with store:
        events: list[RunEvent] = []
        assert Runner(resumed_scenario, backend, store).run(events.append) == "complete"
    assert isinstance(events[-1], RunFinished) and events[-1].done == 12
    assert responses(path) == reference


def test_parallel_needs_a_backend_that_serves_concurrent_requests(
    backend: LlamaCppBackend, tmp_path: Path
) -> None:
    scenario = parse_scenario(SMALL_SCENARIO)
    with (
        create_session(scenario, backend, RunOptions(), tmp_path / "p.toml") as store,
        pytest.raises(PersonaError, match="--parallel 2 needs a backend"),
    ):
        Runner(scenario, backend, store).run(lambda event: None, parallel=2)


def test_resume_refuses_another_model(tiny_gguf: Path, tmp_path: Path) -> None:
    from tests.tiny_gguf import write_tiny_gguf

    scenario = parse_scenario(SMALL_SCENARIO)
    first = LlamaCppBackend.load(tiny_gguf, n_threads=1)
    with create_session(scenario, first, RunOptions(), tmp_path / "s.toml"):
        pass
    first.close()
    other_path = tmp_path / "other.gguf"
    write_tiny_gguf(other_path, seed=99)
    other = LlamaCppBackend.load(other_path, n_threads=1)
    _, store = open_session(tmp_path / "s.toml")
    with store, pytest.raises(PersonaError, match="resume it with the same model file"):
        check_same_model(store, other)
    other.close()


def test_resume_session_leaves_nothing_locked_or_loaded_on_a_wrong_model(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    from persona_tui.run.lifecycle import resume_session
    from persona_tui.session.store import SessionStore
    from tests.tiny_gguf import write_tiny_gguf

    scenario = parse_scenario(SMALL_SCENARIO)
    first = LlamaCppBackend.load(tiny_gguf, n_threads=1)
    with create_session(scenario, first, RunOptions(), tmp_path / "s.toml"):
        pass
    first.close()
    other_path = write_tiny_gguf(tmp_path / "other.gguf", seed=99)
    loaded: list[LlamaCppBackend] = []

    def load(ref: str) -> LlamaCppBackend:
        loaded.append(LlamaCppBackend.load(Path(ref), n_threads=1))
        return loaded[-1]

    with pytest.raises(PersonaError, match="resume it with the same model file"):
        resume_session(tmp_path / "s.toml", load, str(other_path))
    assert len(loaded) == 1
    with pytest.raises(Exception, match="closed"):
        loaded[0].count_tokens("x")  # the refused model was released
    SessionStore.open(tmp_path / "s.toml").close()  # and the session is not left locked

    resumed_scenario, store, backend = resume_session(tmp_path / "s.toml", load)
    with store:
        assert backend.info.path == str(tiny_gguf)  # the recorded model by default
        assert resumed_scenario.sha256 == scenario.sha256
    backend.close()


# ------------------------------------------------------------------ batched decoding


def direct_texts(backend: LlamaCppBackend, path: Path, batched: bool) -> dict[object, str]:
    """Each trial's text computed again straight from the backend: one by one with
    `generate`, or each group of the plan with `generate_batch`, `batch` at a time
    (single-turn probes only: their prompt is the whole request)."""
    from persona_tui.backends.base import BatchDone, GenerationRequest
    from persona_tui.run.plan import batch_groups

    session = load_session(path)
    sampling, plan = session.header.sampling, session.header.plan
    stored = {t.key: t for t in session.trials}
    texts: dict[object, str] = {}
    for group in batch_groups(plan):
        trials = [stored[spec.key] for spec in group]
        if any(t.turn_responses for t in trials):
            continue
        requests = [GenerationRequest(t.prompt, t.seed, sampling, plan.stop) for t in trials]
        if batched:
            for event in backend.generate_batch(requests, None, plan.batch):
                if isinstance(event, BatchDone):
                    texts[trials[event.index].key] = event.result.text
        else:
            for trial, request in zip(trials, requests, strict=True):
                texts[trial.key] = backend.generate(request).text
    return texts


SINGLE_TURN = RunOptions(probes=["wish", "newcomer"])


def test_a_condition_s_cells_are_decoded_together_by_default(
    backend: LlamaCppBackend, tmp_path: Path
) -> None:
    path = run_once(backend, tmp_path / "batched.toml", SINGLE_TURN)
    plan = load_session(path).header.plan
    assert (plan.batch, plan.batch_cells) == (2, 2)  # a cell's two samples; both cells
    stored = {t.key: t.response for t in load_session(path).trials}
    direct = direct_texts(backend, path, batched=True)
    assert len(direct) == 8 and all(stored[key] == text for key, text in direct.items())


def test_batch_1_gives_exactly_the_one_by_one_results(
    backend: LlamaCppBackend, tmp_path: Path
) -> None:
    path = run_once(backend, tmp_path / "one.toml", RunOptions(batch=1, probes=["wish"]))
    assert load_session(path).header.plan.batch == 1
    stored = {t.key: t.response for t in load_session(path).trials}
    direct = direct_texts(backend, path, batched=False)
    assert len(direct) == 4 and all(stored[key] == text for key, text in direct.items())


def test_a_batched_trial_depends_on_its_plan_not_on_what_ran_before(
    backend: LlamaCppBackend, tmp_path: Path
) -> None:
    whole = responses(run_once(backend, tmp_path / "whole.toml", RunOptions(samples=4)))
    run_once(backend, tmp_path / "part.toml", RunOptions(samples=4, probes=["wish"]))
    again = responses(run_once(backend, tmp_path / "again.toml", RunOptions(samples=4)))
    assert again == whole


def test_a_batch_that_cannot_fit_the_context_is_refused_before_the_run(
    tiny_gguf: Path, tmp_path: Path
) -> None:
    small = LlamaCppBackend.load(tiny_gguf, n_ctx=512, n_threads=1)
    scenario = parse_scenario(SMALL_SCENARIO)
    try:
        with pytest.raises(PersonaError, match="--batch 8 does not fit the model's context of 512"):
            create_session(
                scenario, small, RunOptions(samples=8, batch=8, max_tokens=20), tmp_path / "x.toml"
            )
        # Without --batch, as many as fit.
        with create_session(
            scenario, small, RunOptions(samples=8, max_tokens=20), tmp_path / "y.toml"
        ) as store:
            assert 1 < store.session.header.plan.batch < 8
    finally:
        small.close()


def test_batch_needs_a_backend_that_decodes_together() -> None:
    from persona_tui.run.plan import batch_size

    assert batch_size(None, 5, 1) == 1
    assert batch_size(None, 5, 64) == 5
    assert batch_size(3, 5, 64) == 3
    assert batch_size(8, 1, 64) == 8  # one sample a cell: eight cells' trials at once
    with pytest.raises(PersonaError, match="--batch 4 needs a backend"):
        batch_size(4, 5, 1)
    with pytest.raises(PersonaError, match="at least 1"):
        batch_size(0, 5, 64)


def test_a_batch_wider_than_a_cell_decodes_several_cells_at_once(
    backend: LlamaCppBackend, tmp_path: Path
) -> None:
    """One sample a cell, --batch 3, two probes: each condition's two cells together."""
    options = RunOptions(samples=1, batch=3, probes=["wish", "newcomer"])
    path = run_once(backend, tmp_path / "wide.toml", options)
    plan = load_session(path).header.plan
    assert (plan.batch, plan.batch_cells) == (3, 2)
    stored = {t.key: t.response for t in load_session(path).trials}
    direct = direct_texts(backend, path, batched=True)
    assert len(direct) == 4 and all(stored[key] == text for key, text in direct.items())
