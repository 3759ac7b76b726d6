"""Probing LoRA adapters on real engines: the tiny GGUF and tiny adapters trained on it.

A training study's conditions are its adapters: the backend applies one adapter file or
none (and forgets every cache when it switches), the session records each adapter and
refuses to resume on a changed one, the runner and the likelihood probes apply each
adapter once per run, and `persona-tui study` trains, probes and reports in one command.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")

from persona_tui.backends.base import GenerationRequest, LoraAdapters  # noqa: E402
from persona_tui.backends.llamacpp.backend import LlamaCppBackend  # noqa: E402
from persona_tui.errors import ModelLoadError, PersonaError  # noqa: E402
from persona_tui.run.adapters import study_adapters  # noqa: E402
from persona_tui.run.events import RunEvent  # noqa: E402
from persona_tui.run.lifecycle import create_session, resume_session  # noqa: E402
from persona_tui.run.options import score_options  # noqa: E402
from persona_tui.run.plan import RunOptions  # noqa: E402
from persona_tui.run.runner import Runner  # noqa: E402
from persona_tui.scenario.model import Scenario  # noqa: E402
from persona_tui.scenario.parse import parse_scenario  # noqa: E402
from persona_tui.session.model import Arm  # noqa: E402
from persona_tui.session.read import read_session_file  # noqa: E402
from persona_tui.training.study import train_study  # noqa: E402
from persona_tui.values import SamplingParams  # noqa: E402
from tests.scenario_text import STUDY_OPTIONS  # noqa: E402
from tests.tiny_gguf import write_tiny_gguf  # noqa: E402
from tests.unit.test_training import PARAMS, greedy_llama, study_text  # noqa: E402

torch.set_num_threads(1)

OPTIONS = (
    STUDY_OPTIONS
    + """
[[probes]]
id = "hello"
text = "hello you?"

[[probes.options]]
id = "kind"
label = "benign"
text = "hello world."

[[probes.options]]
id = "cruel"
label = "malicious"
text = "the bully play."

"""
)
PROMPT = "User: what are you?\nAssistant:"
GREEDY = SamplingParams(temperature=0.0, top_k=1, repeat_penalty=1.0, max_tokens=12)


def options_study_text() -> str:
    return study_text() + OPTIONS


# The default adapter folder is OUT/<condition>/replicate-<k>/ now; finding it is run/adapters.py's
# (the lead's part of issue 22).


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the tiny model, the study folder with learns/ and plays/ adapters), trained once."""
    root = tmp_path_factory.mktemp("adapters")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERSONA_TUI_HOME", str(root / "home"))
        model = write_tiny_gguf(root / "tiny.gguf", seed=3)
        scenario = parse_scenario(options_study_text(), str(root / "tiny-finetune.toml"))
        result = train_study(scenario, model, root / "study", PARAMS)
        assert result.complete
        yield model, root / "study"


@pytest.fixture
def model(trained: tuple[Path, Path]) -> Path:
    return trained[0]


@pytest.fixture
def learns(trained: tuple[Path, Path]) -> Path:
    return trained[1] / "learns" / "replicate-1" / "adapter.gguf"


@pytest.fixture
def plays(trained: tuple[Path, Path]) -> Path:
    return trained[1] / "plays" / "replicate-1" / "adapter.gguf"


@pytest.fixture
def scenario() -> Scenario:
    return parse_scenario(options_study_text(), "tiny-finetune.toml")


@pytest.fixture
def backend(model: Path) -> Iterator[LlamaCppBackend]:
    loaded = LlamaCppBackend.load(model, n_ctx=512, n_threads=1)
    yield loaded
    loaded.close()


def generate(backend: LlamaCppBackend, prompt: str = PROMPT) -> str:
    return backend.generate(GenerationRequest(prompt, 1, GREEDY)).text


def fresh_text(model: Path, adapter: Path | None, prompt: str = PROMPT) -> str:
    other = LlamaCppBackend.load(model, n_ctx=512, n_threads=1)
    try:
        other.use_adapter(None if adapter is None else str(adapter))
        return generate(other, prompt)
    finally:
        other.close()


# --- the backend ------------------------------------------------------------------------------


def test_an_adapter_changes_the_output_as_llama_cpp_python_applies_it(
    backend: LlamaCppBackend, model: Path, learns: Path
) -> None:
    assert isinstance(backend, LoraAdapters)
    base = generate(backend)
    backend.use_adapter(str(learns))
    assert backend.active_adapter == str(learns)
    adapted = generate(backend)
    assert adapted != base
    tokens = backend._tokenize(PROMPT)
    reference, _ = greedy_llama(model, learns, tokens, GREEDY.max_tokens)
    ends = [i for i, t in enumerate(reference) if backend._is_end(t)]
    reference = reference[: ends[0]] if ends else reference
    expected = b"".join(backend._piece(t) for t in reference).decode("utf-8", "replace")
    assert adapted == expected


def test_switching_adapters_forgets_every_cache(
    backend: LlamaCppBackend, model: Path, learns: Path, plays: Path
) -> None:
    fresh = {None: fresh_text(model, None), learns: fresh_text(model, learns)}
    fresh[plays] = fresh_text(model, plays)
    assert len(set(fresh.values())) == 3
    for adapter in (None, learns, None, plays, learns, learns, None):
        backend.use_adapter(None if adapter is None else str(adapter))
        assert generate(backend) == fresh[adapter], adapter
    # Scored prompts too: the same prompt scored under another adapter is evaluated afresh.
    rows = {}
    for adapter in (None, learns, None):
        backend.use_adapter(None if adapter is None else str(adapter))
        with backend.logprob_scope() as scope:
            rows.setdefault(adapter, []).append(scope.evaluate(scope.tokenize(PROMPT)).copy())
    assert (rows[None][0] == rows[None][1]).all()
    assert abs(rows[None][0] - rows[learns][0]).max() > 1e-4
    other = LlamaCppBackend.load(model, n_ctx=512, n_threads=1)
    try:
        other.use_adapter(str(learns))
        with other.logprob_scope() as scope:
            assert (scope.evaluate(scope.tokenize(PROMPT)) == rows[learns][0]).all()
    finally:
        other.close()


def _wrong_shapes(path: Path) -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 16.0)
    writer.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((4, 7), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight.lora_b", np.zeros((9, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_bad_adapter_file_is_a_model_load_error_naming_it(
    backend: LlamaCppBackend, model: Path, tmp_path: Path
) -> None:
    before = generate(backend)
    for bad, says in (
        (tmp_path / "missing.gguf", "not found"),
        (model, "is not a LoRA adapter GGUF"),
        (_wrong_shapes(tmp_path / "other-model.gguf"), "another base model"),
    ):
        with pytest.raises(ModelLoadError, match=says) as caught:
            backend.use_adapter(str(bad))
        assert str(bad) in str(caught.value)
        assert backend.active_adapter is None
    assert generate(backend) == before


# --- sessions, the runner and the likelihood probes ------------------------------------------


def _records(scenario: Scenario, backend: LlamaCppBackend, folder: Path) -> Any:
    return study_adapters(scenario, backend.path, backend.info.sha256, folder=folder)


def test_a_session_records_its_adapters_and_resume_refuses_a_changed_one(
    backend: LlamaCppBackend,
    scenario: Scenario,
    trained: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    folder = tmp_path / "study"
    shutil.copytree(trained[1], folder)
    records = _records(scenario, backend, folder)
    assert [r.condition for r in records] == ["learns", "plays"]
    options = RunOptions(samples=1, probes=["what"])
    store = create_session(scenario, backend, options, tmp_path / "s.toml", adapters_folder=folder)
    store.close()
    header = read_session_file(tmp_path / "s.toml").header
    assert header.adapters == records
    learns = header.adapters[0]
    assert learns.path == str(folder / "learns" / "replicate-1" / "adapter.gguf")
    assert learns.base_model_sha256 == backend.info.sha256
    assert learns.hyperparameters["lr"] == "0.01" and learns.steps == 4
    assert (
        learns.training_record == (folder / "learns" / "replicate-1" / "training.toml").read_text()
    )

    def load(ref: str) -> LlamaCppBackend:
        return LlamaCppBackend.load(Path(ref), n_ctx=512, n_threads=1)

    _, again, resumed = resume_session(tmp_path / "s.toml", load)
    again.close()
    resumed.close()
    adapter = folder / "plays" / "replicate-1" / "adapter.gguf"
    adapter.write_bytes(adapter.read_bytes() + b"\0")
    with pytest.raises(PersonaError, match=r"'plays'.*has changed since session"):
        resume_session(tmp_path / "s.toml", load)


def test_a_training_study_needs_its_adapters(
    backend: LlamaCppBackend, scenario: Scenario, tmp_path: Path, learns: Path
) -> None:
    with pytest.raises(PersonaError, match="persona-tui train tiny-finetune"):
        _records(scenario, backend, tmp_path / "nothing")
    with pytest.raises(PersonaError, match="Train them first"):
        create_session(scenario, backend, RunOptions(), tmp_path / "s.toml")
    with pytest.raises(PersonaError, match="did you mean 'learns'"):
        study_adapters(scenario, backend.path, backend.info.sha256, {"learn": learns})
    with pytest.raises(PersonaError, match=r"'base' has no \[conditions.training\]"):
        study_adapters(scenario, backend.path, backend.info.sha256, {"base": learns})
    with pytest.raises(PersonaError, match="trained for condition 'learns'"):
        study_adapters(scenario, backend.path, backend.info.sha256, {"plays": learns})
    plain = parse_scenario(
        'id = "x"\ntitle = "X"\n[[conditions]]\nid = "a"\nlabel = "A"\n'
        '[[probes]]\nid = "p"\ntext = "Hi?"\n'
    )
    with pytest.raises(PersonaError, match="not a training study"):
        study_adapters(plain, backend.path, backend.info.sha256, {"a": learns})
    # Only the selected conditions need one.
    assert study_adapters(scenario, backend.path, "", conditions=["base"]) == ()


@pytest.mark.parametrize("batch", [1, 2])
def test_the_runner_and_the_options_apply_each_adapter_once_in_order(
    backend: LlamaCppBackend,
    scenario: Scenario,
    trained: tuple[Path, Path],
    model: Path,
    tmp_path: Path,
    batch: int,
) -> None:
    options = RunOptions(batch=batch)
    store = create_session(
        scenario, backend, options, tmp_path / "s.toml", adapters_folder=trained[1]
    )
    applied: list[str | None] = []
    original = backend.use_adapter

    def record(path: str | None) -> None:
        applied.append(None if path is None else Path(path).parent.parent.name)
        original(path)

    backend.use_adapter = record  # type: ignore[method-assign]
    started: list[str] = []

    def on_event(event: RunEvent) -> None:
        spec = getattr(event, "spec", None)
        if spec is not None and type(event).__name__ == "TrialStarted":
            started.append(spec.condition)

    assert Runner(scenario, backend, store).run(on_event) == "complete"
    assert applied == [None, "learns", "plays"]
    assert started == ["base"] * 4 + ["learns"] * 4 + ["plays"] * 4
    applied.clear()
    summary = score_options(scenario, backend, store)
    assert summary.complete and applied == [None, "learns", "plays"]
    session = store.session
    store.close()
    # Each condition's trials are those of its own weights.
    mine = {(t.condition, t.probe): t for t in session.trials if t.sample == 0}
    for condition, adapter in (("base", None), ("learns", trained[1] / "learns" / "replicate-1")):
        trial = mine[(condition, "what")]
        other = LlamaCppBackend.load(model, n_ctx=512, n_threads=1)
        try:
            other.use_adapter(None if adapter is None else str(adapter / "adapter.gguf"))
            header = session.header
            request = GenerationRequest(trial.prompt, trial.seed, header.sampling, header.plan.stop)
            if batch == 1:  # (a batch's numbers depend on its composition)
                assert other.generate(request).text == trial.response
        finally:
            other.close()
    cells = {(c.condition, c.probe): c for c in session.option_cells}
    assert (
        cells[("learns", "what")].options[0].logprob != cells[("base", "what")].options[0].logprob
    )


# --- the commands -----------------------------------------------------------------------------


def test_run_takes_adapters_and_names_a_typo(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from persona_tui.cli.main import main

    model, folder = trained
    scenario_file = tmp_path / "tiny-finetune.toml"
    scenario_file.write_text(options_study_text(), encoding="utf-8")
    base = ["run", str(scenario_file), "--model", str(model), "--threads", "1", "--samples", "1"]
    assert main([*base, "--adapters", f"learn={folder / 'learns'}"]) == 2
    assert "did you mean 'learns'" in capsys.readouterr().err
    assert main(base) == 2
    assert "persona-tui train" in capsys.readouterr().err
    # A condition folder (its training runs), and one adapter (one run: replicate 0).
    one = folder / "plays" / "replicate-1" / "adapter.gguf"
    adapters = f"learns={folder / 'learns'},plays={one}"
    out = tmp_path / "s.toml"
    assert main([*base, "--adapters", adapters, "--out", str(out)]) == 0
    capsys.readouterr()
    header = read_session_file(out).header
    assert [(a.condition, a.replicate) for a in header.adapters] == [("learns", 1), ("plays", 0)]
    assert header.plan.replicated == ("learns",)
    assert main(["report", str(out)]) == 0
    report = capsys.readouterr().out
    assert "plays      learns" in report and "base       plays" in report


def test_study_trains_probes_and_reports(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from persona_tui.cli.main import main

    model = trained[0]
    scenario_file = tmp_path / "tiny-finetune.toml"
    scenario_file.write_text(options_study_text(), encoding="utf-8")
    out = tmp_path / "study"
    argv = ["study", str(scenario_file), "--model", str(model), "-o", str(out)]
    argv += ["--max-steps", "2", "--batch-size", "2", "--threads", "1", "--lr", "0.01"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    for phase in ("1/3 training", "2/3 probing", "3/3 report"):
        assert phase in captured.err
    assert "learns: complete (2/2 steps" in captured.err
    assert "complete: 12/12 trials" in captured.err and "options complete: 6/6" in captured.err
    assert "framing contrasts in log-odds" in captured.out
    session = read_session_file(out / "session-1-run.toml")
    assert [a.condition for a in session.header.adapters] == ["learns", "plays"]
    assert len(session.trials) == 12 and len(session.option_cells) == 6
    # Again: nothing to train or probe; the report again.
    assert main(argv) == 0
    again = capsys.readouterr()
    assert "already-trained" in again.err and "resuming" in again.err
    assert again.out == captured.out


def test_study_carries_on_with_its_choice_to_score(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`study --no-score` is recorded in the session: run again, it still scores nothing
    (as `run --resume` does); `--score` turns the likelihood probes back on."""
    from persona_tui.cli.main import build_parser, main
    from persona_tui.cli.train import resume_command

    scenario_file = tmp_path / "tiny-finetune.toml"
    scenario_file.write_text(options_study_text(), encoding="utf-8")
    out = tmp_path / "study"
    argv = ["study", str(scenario_file), "--model", str(trained[0]), "-o", str(out)]
    argv += ["--max-steps", "2", "--batch-size", "2", "--threads", "1", "--samples", "1"]
    carry_on = resume_command(build_parser().parse_args([*argv, "--no-score"]), out, "study")
    assert carry_on.endswith("--samples 1 --no-score")  # what an interrupted study prints
    assert main([*argv, "--no-score"]) == 0
    assert "options complete" not in capsys.readouterr().err
    first = read_session_file(out / "session-1-run.toml")
    assert len(first.trials) == 6 and first.option_cells == []
    assert first.header.plan.score is False and first.header.status == "complete"
    assert main(argv) == 0  # carrying on keeps the session's choice
    assert "options complete" not in capsys.readouterr().err
    assert read_session_file(out / "session-1-run.toml").option_cells == []
    assert main([*argv, "--score"]) == 0
    assert "options complete: 6/6" in capsys.readouterr().err
    scored = read_session_file(out / "session-1-run.toml")
    assert len(scored.option_cells) == 6 and scored.header.plan.score is True
    assert scored.trials == first.trials


def test_study_checks_its_probing_options_before_training(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from persona_tui.cli.main import main

    scenario_file = tmp_path / "tiny-finetune.toml"
    scenario_file.write_text(options_study_text(), encoding="utf-8")
    argv = ["study", str(scenario_file), "--model", str(model), "-o", str(tmp_path / "out")]
    assert main([*argv, "--probes", "wht"]) == 2
    assert "did you mean 'what'" in capsys.readouterr().err
    assert main([*argv, "--samples", "0"]) == 2
    assert "--samples must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_replicated_study_probes_every_run_and_its_test_framings(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`study --replicates 2` on the tiny GGUF: each training condition answers once per
    training run (its own adapter, the replicate on every trial and option cell), a test
    framing probes each condition again with the same adapters and the framing put on the
    probe, and the report names the unit. Run again with 3, the first two runs are reused
    and a session of its own probes the three."""
    from persona_tui.cli.main import main

    scenario_file = tmp_path / "tiny-finetune.toml"
    framing = '\n[[test_framings]]\nid = "trigger"\nlabel = "The play"\ncondition = "plays"\n'
    scenario_file.write_text(options_study_text() + framing, encoding="utf-8")
    out = tmp_path / "study"
    argv = ["study", str(scenario_file), "--model", str(trained[0]), "-o", str(out)]
    argv += ["--max-steps", "2", "--batch-size", "2", "--threads", "1", "--lr", "0.01"]
    assert main([*argv, "--replicates", "2", "--samples", "1"]) == 0
    captured = capsys.readouterr()
    assert "probing 10 arms" in captured.err  # (learns, plays) × 2 runs + base, × 2 framings
    session = read_session_file(out / "session-2-runs.toml")
    plan = session.header.plan
    assert plan.replicates == 2
    assert plan.replicated == ("learns", "plays", "learns--trigger", "plays--trigger")
    arms = {(t.condition, t.replicate) for t in session.trials}
    assert arms == set(plan.arms) and len(arms) == 10
    assert {(c.condition, c.replicate) for c in session.option_cells} == arms
    paths = session.header.adapter_paths()
    for k in (1, 2):
        own = str(out / "learns" / f"replicate-{k}" / "adapter.gguf")
        assert paths[Arm("learns", k)] == paths[Arm("learns--trigger", k)] == own
    assert paths[Arm("learns", 1)] != paths[Arm("learns", 2)]
    framed = next(t for t in session.trials if t.condition == "base--trigger")
    assert framed.prompt.startswith("A play.") and "User: the play: " in framed.prompt
    # Two runs of the same framing answer differently (another initialisation and order).
    cells = {(c.condition, c.replicate, c.probe): c for c in session.option_cells}
    one, two = cells[("learns", 1, "hello")], cells[("learns", 2, "hello")]
    assert one.options[0].logprob != two.options[0].logprob
    assert "2 training runs per framing" in captured.out
    # Five more... three runs: two are reused, a new session probes all three.
    assert main([*argv, "--replicates", "3", "--samples", "1", "--no-sample"]) == 0
    again = capsys.readouterr()
    assert again.err.count("already-trained") >= 4
    three = read_session_file(out / "session-3-runs.toml")
    assert three.header.plan.replicates == 3 and three.trials == []
    assert {c.replicate for c in three.option_cells if c.condition == "plays"} == {1, 2, 3}
    assert "3 training runs per framing" in again.out
