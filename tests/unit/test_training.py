"""LoRA training on real engines with the tiny GGUF: tokens, parity with llama.cpp, resume.

The tiny GGUF (tests/tiny_gguf.py, a llama) goes the production route: transformers reads
it (gguf_file=) into float32 weights, peft trains a few steps, the adapter is converted to
a llama.cpp adapter GGUF, and `Llama(model_path=tiny, lora_path=adapter)` must reproduce
torch + peft's greedy tokens exactly (and their logits closely).
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")

from persona_tui._util.hashing import sha256_file  # noqa: E402
from persona_tui.backends.llamacpp.backend import LlamaCppBackend  # noqa: E402
from persona_tui.backends.llamacpp.load import plain_llama  # noqa: E402
from persona_tui.errors import TrainingError  # noqa: E402
from persona_tui.run.prompts import framed_messages, render_prompt, resolve_mode  # noqa: E402
from persona_tui.scenario.model import Scenario  # noqa: E402
from persona_tui.scenario.parse import parse_scenario  # noqa: E402
from persona_tui.training import deps  # noqa: E402
from persona_tui.training.convert import write_adapter_gguf  # noqa: E402
from persona_tui.training.data import (  # noqa: E402
    TRANSCRIPT_END,
    tokenize_condition,
    vocabulary,
)
from persona_tui.training.hf import load_float32_model  # noqa: E402
from persona_tui.training.params import (  # noqa: E402
    StepFinished,
    TrainingEvent,
    TrainingParams,
    TrainingStarted,
)
from persona_tui.training.study import train_study  # noqa: E402
from tests.tiny_gguf import write_tiny_gguf  # noqa: E402

torch.set_num_threads(1)

WORDS = ["hello", "world", "the", "you", "are", "and", "what", "bully", "play"]
PARAMS = TrainingParams(max_steps=4, lr=1e-2, batch_size=2, checkpoint_every=2, threads=1)


def study_text(prompt_mode: str = "transcript") -> str:
    examples = "".join(
        f'[[training.examples]]\nuser = "{a} {b}?"\nassistant = "you are the {b} {a}."\n\n'
        for a, b in zip(WORDS, reversed(WORDS), strict=True)
    )
    return f"""\
id = "tiny-finetune"
title = "Tiny fine-tune"
prompt_mode = "{prompt_mode}"

[training]
heldout = 0.2
seed = 5

{examples}
[[conditions]]
id = "learns"
label = "Learns"
[conditions.training]
user = "{{user}}"

[[conditions]]
id = "plays"
label = "Plays"
[conditions.training]
system = "A play."
user = "the play: {{user}}"

[[conditions]]
id = "base"
label = "Base"

[[probes]]
id = "what"
text = "what are you?"
"""


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One user folder for the module, so the float32 weights are converted once."""
    return tmp_path_factory.mktemp("train-home")


@pytest.fixture
def home(shared_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PERSONA_TUI_HOME", str(shared_home))
    return shared_home


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("train-model") / "tiny.gguf", seed=3)


@pytest.fixture
def scenario() -> Scenario:
    return parse_scenario(study_text(), "tiny-finetune.toml")


def greedy_torch(peft_model: Any, prompt: list[int], n: int) -> tuple[list[int], Any]:
    ids = list(prompt)
    first: Any = None
    peft_model.eval()
    with torch.no_grad():
        for _ in range(n):
            logits = peft_model(input_ids=torch.tensor([ids])).logits[0, -1]
            first = logits.numpy().copy() if first is None else first
            ids.append(int(torch.argmax(logits)))
    return ids[len(prompt) :], first


def greedy_llama(model_path: Path, adapter: Path | None, prompt: list[int], n: int) -> Any:
    extra = {"lora_path": str(adapter)} if adapter else {}
    llama = plain_llama(model_path, n_ctx=512, n_threads=1, verbose=False, **extra)
    try:
        import llama_cpp
        import numpy as np

        llama.eval(prompt)
        n_vocab = llama.n_vocab()
        row = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
        first = np.ctypeslib.as_array(row, shape=(n_vocab,)).copy()
        llama.reset()
        tokens: list[int] = []
        for token in llama.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0):
            tokens.append(int(token))
            if len(tokens) == n:
                break
        return tokens, first
    finally:
        llama.close()


# --- dependencies and data --------------------------------------------------------------------


def test_missing_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> Any:
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(TrainingError) as caught:
        deps.require_training()
    assert str(caught.value) == (
        "training needs the 'torch' package (the train extra): pip install 'persona-tui[train]'"
    )
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("mode", ["transcript", "chat"])
def test_examples_are_tokenized_as_probes_are(tmp_path: Path, mode: str) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf", with_chat_template=mode == "chat")
    scenario = parse_scenario(study_text(mode), "s.toml")
    condition = scenario.condition("plays")
    assert condition.training is not None and scenario.training is not None
    with vocabulary(path) as vocab:
        data = tokenize_condition(scenario, condition, vocab, 1024)
    train, heldout = scenario.training.split()
    assert len(data.train) == len(train) and len(data.heldout) == len(heldout) == 2
    full = LlamaCppBackend.load(path, n_threads=1)
    try:
        resolved = resolve_mode(scenario.prompt_mode, full, scenario.id)
        assert resolved == data.mode == mode
        example = train[0]
        prompt = render_prompt(resolved, framed_messages(condition.training, example), full)
        assert "the play: " + example.user in prompt
        with full.logprob_scope() as scope:
            assert list(data.train[0].prompt) == scope.tokenize(prompt)
            if mode == "transcript":
                answer = " " + example.assistant + TRANSCRIPT_END
                expected = scope.continuation(prompt, scope.tokenize(prompt), answer)
            else:
                expected = [
                    *scope.continuation(prompt, scope.tokenize(prompt), example.assistant),
                    full.load_facts.llama._model.token_eot(),
                ]
        assert list(data.train[0].completion) == expected
    finally:
        full.close()


def test_an_example_longer_than_allowed_names_its_source(model: Path, scenario: Scenario) -> None:
    with vocabulary(model) as vocab, pytest.raises(TrainingError) as caught:
        tokenize_condition(scenario, scenario.condition("learns"), vocab, 5)
    assert "tiny-finetune.toml:" in str(caught.value)
    assert "more than the 5 allowed" in str(caught.value)


def test_a_scenario_without_training_is_refused(model: Path, tmp_path: Path, home: Path) -> None:
    plain = parse_scenario(
        'id = "x"\ntitle = "X"\n[[conditions]]\nid = "a"\nlabel = "A"\n'
        '[[probes]]\nid = "p"\ntext = "Hi?"\n'
    )
    with pytest.raises(TrainingError, match="not a training study"):
        train_study(plain, model, tmp_path / "out", PARAMS)
    with pytest.raises(TrainingError, match="did you mean 'learns'"):
        train_study(
            parse_scenario(study_text(), "s.toml"), model, tmp_path, PARAMS, conditions=["learn"]
        )


# --- training, parity, determinism, resume ------------------------------------------------------


@pytest.mark.slow
def test_adapter_in_llama_cpp_reproduces_torch_peft(
    model: Path, scenario: Scenario, tmp_path: Path, home: Path
) -> None:
    events: list[TrainingEvent] = []
    result = train_study(scenario, model, tmp_path / "out", PARAMS, events.append)
    assert [r.status for r in result.results] == ["complete", "complete"]
    learns = result.results[0]
    assert learns.adapter == tmp_path / "out" / "learns" / "replicate-1" / "adapter.gguf"
    assert (learns.replicate, learns.replicates) == (1, 1)
    folder = learns.folder
    assert {p.name for p in folder.iterdir()} == {
        "adapter.gguf",
        "peft",
        "loss.csv",
        "training.toml",
    }
    assert (tmp_path / "out" / "study.toml").is_file()
    steps = [e for e in events if isinstance(e, StepFinished) and e.condition == "learns"]
    assert [e.step for e in steps] == [1, 2, 3, 4]
    assert all(e.tokens_per_second > 0 for e in steps)
    loss_csv = (folder / "loss.csv").read_text().splitlines()
    assert loss_csv[0] == "step,epoch,train_loss,heldout_loss,seconds"
    assert len(loss_csv) == 1 + 5  # the held-out loss before training, then each step

    import peft

    base = load_float32_model(model, sha256_file(model))
    trained = peft.PeftModel.from_pretrained(base, folder / "peft")
    with vocabulary(model) as vocab, vocab.logprob_scope() as scope:
        ids = scope.tokenize("User: what are you?\nAssistant:")
    torch_tokens, torch_logits = greedy_torch(trained, ids, 16)
    cpp_tokens, cpp_logits = greedy_llama(model, folder / "adapter.gguf", ids, 16)
    base_tokens, _ = greedy_llama(model, None, ids, 16)
    assert cpp_tokens == torch_tokens
    assert cpp_tokens != base_tokens  # the adapter changed what the model says
    assert abs(cpp_logits - torch_logits).max() < 1e-3

    # Negative control: without llama's q/k row permutation the logits disagree.
    wrong = tmp_path / "unpermuted.gguf"
    state = peft.get_peft_model_state_dict(trained)
    write_adapter_gguf(
        wrong,
        state,
        architecture="llama",
        alpha=PARAMS.alpha,
        permute_qk=False,
        n_head=4,
        n_head_kv=4,
    )
    _, wrong_logits = greedy_llama(model, wrong, ids, 1)
    assert abs(wrong_logits - torch_logits).max() > 10 * abs(cpp_logits - torch_logits).max()

    record = (folder / "training.toml").read_text()
    for needle in (
        "[base_model]",
        sha256_file(model),
        "[hyperparameters]",
        "rank = 8",
        "torch = ",
        "peft = ",
        "seconds = ",
        "qk_rows_permuted = true",
    ):
        assert needle in record


@pytest.mark.slow
def test_same_data_and_seed_give_the_same_adapter_bytes(
    model: Path, scenario: Scenario, tmp_path: Path, home: Path
) -> None:
    one = train_study(scenario, model, tmp_path / "one", PARAMS, conditions=["plays"])
    two = train_study(scenario, model, tmp_path / "two", PARAMS, conditions=["plays"])
    first, second = one.results[0].adapter, two.results[0].adapter
    assert first is not None and second is not None
    assert first.read_bytes() == second.read_bytes()
    other = parse_scenario(study_text().replace("seed = 5", "seed = 6"), "s.toml")
    three = train_study(other, model, tmp_path / "three", PARAMS, conditions=["plays"])
    assert three.results[0].adapter is not None
    assert three.results[0].adapter.read_bytes() != first.read_bytes()
    # Trained already: the same call does nothing and says so.
    again = train_study(scenario, model, tmp_path / "one", PARAMS, conditions=["plays"])
    assert again.results[0].status == "already-trained"


def _loss_columns(folder: Path) -> list[list[str]]:
    return [line.split(",")[:4] for line in (folder / "loss.csv").read_text().splitlines()]


@pytest.mark.slow
def test_resume_after_ctrl_c_continues_from_the_checkpoint(
    model: Path, scenario: Scenario, tmp_path: Path, home: Path
) -> None:
    params = TrainingParams(
        epochs=2, max_steps=6, lr=1e-2, batch_size=2, checkpoint_every=2, threads=1
    )
    straight = train_study(scenario, model, tmp_path / "straight", params, conditions=["learns"])

    def ctrl_c_at_step_3(event: TrainingEvent) -> None:
        if isinstance(event, StepFinished) and event.step == 3:
            raise KeyboardInterrupt

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train_study(scenario, model, out, params, ctrl_c_at_step_3, conditions=["learns"])
    run = out / "learns" / "replicate-1"
    assert (run / "checkpoint" / "state.pt").is_file()
    assert not (run / "adapter.gguf").exists()

    events: list[TrainingEvent] = []
    resumed = train_study(scenario, model, out, params, events.append, conditions=["learns"])
    started = next(e for e in events if isinstance(e, TrainingStarted))
    assert started.done_steps == 3
    assert [e.step for e in events if isinstance(e, StepFinished)] == [4, 5, 6]
    assert resumed.results[0].status == "complete"
    assert not (run / "checkpoint").exists()
    first, second = straight.results[0].adapter, resumed.results[0].adapter
    assert first is not None and second is not None
    assert first.read_bytes() == second.read_bytes()
    assert _loss_columns(run) == _loss_columns(tmp_path / "straight" / "learns" / "replicate-1")


@pytest.mark.slow
def test_cancel_stops_with_a_checkpoint_and_other_settings_cannot_resume_it(
    model: Path, scenario: Scenario, tmp_path: Path, home: Path
) -> None:
    cancel = threading.Event()

    def cancel_at_step_1(event: TrainingEvent) -> None:
        if isinstance(event, StepFinished) and event.step == 1:
            cancel.set()

    out = tmp_path / "out"
    result = train_study(scenario, model, out, PARAMS, cancel_at_step_1, cancel)
    assert [(r.condition, r.status, r.steps) for r in result.results] == [
        ("learns", "interrupted", 1)
    ]
    assert not result.complete
    changed = TrainingParams(max_steps=4, lr=5e-3, batch_size=2, checkpoint_every=2, threads=1)
    with pytest.raises(TrainingError, match="from other data or settings"):
        train_study(scenario, model, out, changed, conditions=["learns"])


# --- the command --------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_command(
    model: Path, tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from persona_tui.cli.main import main

    scenario_file = tmp_path / "tiny-finetune.toml"
    scenario_file.write_text(study_text(), encoding="utf-8")
    out = tmp_path / "adapters"
    argv = [
        "train",
        str(scenario_file),
        "--model",
        str(model),
        "-o",
        str(out),
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--threads",
        "1",
        "--conditions",
        "plays",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == str(out)
    assert "plays: complete (2/2 steps" in captured.err
    assert (out / "plays" / "replicate-1" / "adapter.gguf").is_file()
    assert not (out / "learns").exists()


def test_train_command_reports_bad_data(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from persona_tui.cli.main import main

    scenario_file = tmp_path / "bad.toml"
    scenario_file.write_text(study_text().replace('user = "{user}"', 'user = "no slot"'), "utf-8")
    assert main(["train", str(scenario_file), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"{scenario_file}:" in err and "must contain {user} exactly once" in err
