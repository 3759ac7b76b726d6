"""A resumed run keeps its choices: the session records whether the run samples its trials
and scores its answer options (`[plan]`'s `sample` and `score`), a resume honours them
unless told otherwise, and the new choice is recorded. On the real engine, the tiny GGUF.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_tui.backends.base import Backend
from persona_tui.errors import PersonaError
from persona_tui.models.config import Config
from persona_tui.models.load import load_model
from persona_tui.run.events import OptionsProgress, RunEvent, TrialFinished
from persona_tui.run.finish import finish_run
from persona_tui.run.lifecycle import RunRequest, open_run
from persona_tui.run.plan import RunOptions
from persona_tui.run.runner import RunControl
from persona_tui.scenario.parse import parse_scenario
from persona_tui.session.model import Session
from persona_tui.session.store import load_session
from tests.scenario_text import OPTIONS_SCENARIO

TRIALS = 6  # 2 conditions × 3 probes × 1 sample
CELLS = 4  # 2 conditions × the 2 probes with options


def load(ref: str, config: Config, backend: str) -> Backend:
    return load_model(ref, config, 1, backend)


def start(
    path: Path, model: Path, options: RunOptions, stop_after: type[RunEvent] | None = None
) -> None:
    """A new run of the options scenario into `path`, cancelled after the first trial or
    cell (`stop_after`) when asked."""
    scenario = parse_scenario(OPTIONS_SCENARIO, "options.toml")
    request = RunRequest(
        config=Config(),
        scenario=scenario,
        model=str(model),
        options=RunOptions(samples=1, max_tokens=4, sample=options.sample, score=options.score),
        out=path,
    )
    finish(request, stop_after)


def resume(path: Path, options: RunOptions | None = None) -> Session:
    finish(RunRequest(config=Config(), resume=path, options=options or RunOptions()))
    return load_session(path)


def finish(request: RunRequest, stop_after: type[RunEvent] | None = None) -> None:
    control = RunControl()

    def on_event(event: RunEvent) -> None:
        if stop_after is not None and isinstance(event, stop_after):
            control.cancel()

    with open_run(request, on_event, load) as run:
        finish_run(run, on_event, control)


def test_a_no_score_run_resumes_without_scoring_until_told_to(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    path = tmp_path / "s.toml"
    start(path, tiny_gguf, RunOptions(score=False), stop_after=TrialFinished)
    stopped = load_session(path)
    assert stopped.header.status == "interrupted" and 0 < len(stopped.trials) < TRIALS
    assert (stopped.header.plan.sample, stopped.header.plan.score) == (True, False)
    assert "score = false" in path.read_text("utf-8")

    resumed = resume(path)  # as `run --resume`, `study` and the app's r resume it
    assert len(resumed.trials) == TRIALS and resumed.option_cells == []
    assert resumed.header.status == "complete"  # options it chose not to score are not missing
    assert resumed.header.plan.score is False

    scored = resume(path, RunOptions(score=True))  # `run --resume --score`
    assert scored.header.plan.score is True and scored.header.status == "complete"
    assert len(scored.option_cells) == CELLS
    assert scored.trials == resumed.trials


def test_a_no_sample_run_resumes_without_sampling_until_told_to(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    path = tmp_path / "s.toml"
    start(path, tiny_gguf, RunOptions(sample=False), stop_after=OptionsProgress)
    stopped = load_session(path)
    assert stopped.header.status == "interrupted" and stopped.trials == []
    assert 0 < len(stopped.option_cells) < CELLS
    assert (stopped.header.plan.sample, stopped.header.plan.score) == (False, True)

    resumed = resume(path)
    assert resumed.trials == [] and len(resumed.option_cells) == CELLS
    assert resumed.header.status == "complete" and resumed.header.plan.sample is False

    sampled = resume(path, RunOptions(sample=True))  # `run --resume --sample`
    assert len(sampled.trials) == TRIALS and sampled.header.status == "complete"
    assert sampled.header.plan.sample is True
    assert sampled.option_cells == resumed.option_cells


def test_no_score_on_a_resume_turns_scoring_off_and_is_recorded(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    path = tmp_path / "s.toml"
    start(path, tiny_gguf, RunOptions(), stop_after=TrialFinished)
    assert load_session(path).header.plan.score is True
    resumed = resume(path, RunOptions(score=False))  # `run --resume --no-score`
    assert len(resumed.trials) == TRIALS and resumed.option_cells == []
    assert resumed.header.plan.score is False and resumed.header.status == "complete"


def test_a_session_from_before_the_choices_samples_and_scores(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    """Sessions written before `[plan]` had `sample` and `score` did both."""
    path = tmp_path / "old.toml"
    start(path, tiny_gguf, RunOptions(), stop_after=TrialFinished)
    text = path.read_text("utf-8")
    old = text.replace("sample = true\nscore = true\n", "", 1)
    plan = old.split("\n[plan]\n")[1].split("\n[")[0]
    assert old != text and "\nsample =" not in plan and "\nscore =" not in plan
    path.write_text(old, "utf-8")
    before = load_session(path)
    assert (before.header.plan.sample, before.header.plan.score) == (True, True)

    resumed = resume(path)
    assert len(resumed.trials) == TRIALS and len(resumed.option_cells) == CELLS
    assert resumed.header.status == "complete"


def test_a_resume_left_nothing_to_do_is_refused_before_the_model_loads(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    path = tmp_path / "s.toml"
    start(path, tiny_gguf, RunOptions(score=False), stop_after=TrialFinished)
    before = path.read_bytes()
    loaded: list[str] = []

    def counting(ref: str, config: Config, backend: str) -> Backend:
        loaded.append(ref)
        return load(ref, config, backend)

    request = RunRequest(config=Config(), resume=path, options=RunOptions(sample=False))
    with pytest.raises(PersonaError, match=r"scores no options \(--no-score\).*add --score"):
        open_run(request, lambda event: None, counting)
    assert loaded == [] and path.read_bytes() == before
    resume(path)  # and the session was left unlocked
