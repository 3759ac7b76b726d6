"""MLX LoRA training (training/mlx_lora.py, mlx_study.py) with mlx[cpu] on the tiny MLX model:
a few steps in seconds, an adapter mlx-lm loads, the same bytes from the same seed."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlx_lm", reason="MLX training needs: pip install 'persona-tui[mlx]'")

from persona_tui.errors import TrainingError
from persona_tui.scenario.model import Scenario
from persona_tui.scenario.parse import parse_scenario
from persona_tui.training.mlx_lora import MLX_ADAPTER_CONFIG, MLX_ADAPTER_FILE
from persona_tui.training.params import StepFinished, TrainingEvent, TrainingParams
from persona_tui.training.study import train_study
from tests.mlx_fixture import write_tiny_mlx

WORDS = ["hello", "world", "the", "you", "are", "and", "what", "bully", "play"]
PARAMS = TrainingParams(max_steps=4, lr=1e-2, batch_size=2, checkpoint_every=2)
STUDY = (
    'id = "tiny-finetune"\ntitle = "Tiny fine-tune"\nprompt_mode = "transcript"\n\n'
    "[training]\nheldout = 0.2\nseed = 5\n\n"
    + "".join(
        f'[[training.examples]]\nuser = "{a} {b}?"\nassistant = "you are the {b} {a}."\n\n'
        for a, b in zip(WORDS, reversed(WORDS), strict=True)
    )
    + '[[conditions]]\nid = "learns"\nlabel = "Learns"\n[conditions.training]\nuser = "{user}"\n\n'
    '[[conditions]]\nid = "plays"\nlabel = "Plays"\n[conditions.training]\n'
    'system = "A play."\nuser = "the play: {user}"\n\n'
    '[[conditions]]\nid = "base"\nlabel = "Base"\n\n'
    '[[probes]]\nid = "what"\ntext = "what are you?"\n'
)


@pytest.fixture(scope="module", autouse=True)
def _no_compile() -> None:
    import mlx.core as mx

    mx.disable_compile()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_mlx(tmp_path_factory.mktemp("mlx") / "tiny-mlx")


@pytest.fixture
def scenario() -> Scenario:
    return parse_scenario(STUDY, "tiny-finetune.toml")


def greedy(folder: Path, adapter: Path | None, prompt: str) -> list[int]:
    import mlx.core as mx
    import mlx_lm
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    loaded: Any = mlx_lm.load(str(folder), adapter_path=None if adapter is None else str(adapter))
    model, tokenizer = loaded[0], loaded[1]
    steps = generate_step(
        mx.array(tokenizer.encode(prompt)), model, max_tokens=8, sampler=make_sampler(temp=0)
    )
    return [int(token) for token, _ in steps]


def test_an_mlx_folder_trains_an_adapter_mlx_lm_loads(
    folder: Path, scenario: Scenario, tmp_path: Path
) -> None:
    events: list[TrainingEvent] = []
    result = train_study(scenario, folder, tmp_path / "out", PARAMS, events.append)
    assert result.complete
    assert [r.condition for r in result.results] == ["learns", "plays"]
    assert sum(isinstance(e, StepFinished) for e in events) == 8
    for r in result.results:
        assert r.adapter is not None
        assert (r.adapter / MLX_ADAPTER_FILE).is_file()
        assert (r.adapter / MLX_ADAPTER_CONFIG).is_file()
        assert (r.folder / "training.toml").is_file() and (r.folder / "loss.csv").is_file()
        assert r.heldout_loss is not None and r.train_loss is not None
        assert r.seconds < 60  # a few steps take seconds on a CPU
    learns = result.results[0].adapter
    assert learns is not None
    prompt = "User: what are you?\n\nAssistant:"
    assert greedy(folder, learns, prompt) != greedy(folder, None, prompt)
    assert "sha256" in (result.folder / "study.toml").read_text()


def test_same_data_and_seed_give_the_same_adapter_bytes(
    folder: Path, scenario: Scenario, tmp_path: Path
) -> None:
    digests = []
    for name in ("one", "two"):
        result = train_study(scenario, folder, tmp_path / name, PARAMS, conditions=["learns"])
        adapter = result.results[0].adapter
        assert adapter is not None
        digests.append(hashlib.sha256((adapter / MLX_ADAPTER_FILE).read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    other = parse_scenario(STUDY.replace("seed = 5", "seed = 6"), "tiny-finetune.toml")
    result = train_study(other, folder, tmp_path / "other", PARAMS, conditions=["learns"])
    adapter = result.results[0].adapter
    assert adapter is not None
    assert hashlib.sha256((adapter / MLX_ADAPTER_FILE).read_bytes()).hexdigest() != digests[0]


def test_cancel_stops_without_an_adapter(folder: Path, scenario: Scenario, tmp_path: Path) -> None:
    cancel = threading.Event()

    def cancel_after_first_step(event: TrainingEvent) -> None:
        if isinstance(event, StepFinished):
            cancel.set()

    result = train_study(
        scenario, folder, tmp_path / "out", PARAMS, cancel_after_first_step, cancel
    )
    assert not result.complete
    assert result.results[0].status == "interrupted"
    assert result.results[0].adapter is None
    assert result.results[0].steps == 1


def test_resume_after_cancel_gives_the_uninterrupted_adapter(
    folder: Path, scenario: Scenario, tmp_path: Path
) -> None:
    whole = train_study(scenario, folder, tmp_path / "whole", PARAMS, conditions=["learns"])
    assert whole.results[0].adapter is not None
    expected = (whole.results[0].adapter / MLX_ADAPTER_FILE).read_bytes()
    cancel = threading.Event()

    def cancel_at_step_3(event: TrainingEvent) -> None:
        if isinstance(event, StepFinished) and event.step == 3:
            cancel.set()

    out = tmp_path / "resumed"
    first = train_study(
        scenario, folder, out, PARAMS, cancel_at_step_3, cancel, conditions=["learns"]
    )
    assert first.results[0].status == "interrupted" and first.results[0].steps == 3
    assert (out / "learns" / "replicate-1" / "checkpoint" / "mlx_state.json").is_file()
    events: list[TrainingEvent] = []
    second = train_study(scenario, folder, out, PARAMS, events.append, conditions=["learns"])
    assert second.complete
    assert sum(isinstance(e, StepFinished) for e in events) == 1  # only step 4 was left
    adapter = second.results[0].adapter
    assert adapter is not None
    assert (adapter / MLX_ADAPTER_FILE).read_bytes() == expected
    assert not (out / "learns" / "replicate-1" / "checkpoint").exists()
    again = train_study(scenario, folder, out, PARAMS, conditions=["learns"])
    assert again.results[0].status == "already-trained"
    cancel.clear()
    stopped = train_study(scenario, folder, tmp_path / "mixed", PARAMS, cancel_at_step_3, cancel)
    assert stopped.results[0].status == "interrupted"
    other = TrainingParams(max_steps=4, lr=5e-3, batch_size=2, checkpoint_every=2)
    with pytest.raises(TrainingError, match="from other data or settings"):
        train_study(scenario, folder, tmp_path / "mixed", other)


def test_train_command_on_an_mlx_folder(
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from persona_tui.cli.main import main

    monkeypatch.setenv("PERSONA_TUI_HOME", str(tmp_path / "home"))
    scenario_file = tmp_path / "tiny-finetune.toml"
    scenario_file.write_text(STUDY, encoding="utf-8")
    out = tmp_path / "adapters"
    argv = ["train", str(scenario_file), "--model", str(folder), "-o", str(out)]
    argv += ["--max-steps", "2", "--batch-size", "2", "--conditions", "plays"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == str(out)
    assert "plays: complete (2/2 steps" in captured.err
    assert (out / "plays" / "replicate-1" / "mlx" / MLX_ADAPTER_FILE).is_file()
    assert not (out / "learns").exists()


def test_the_loss_on_completion_positions_only_equals_the_full_logits_loss(
    folder: Path, scenario: Scenario
) -> None:
    import mlx.core as mx
    import mlx.nn as nn
    import mlx_lm

    from persona_tui.training.mlx_lora import add_lora, batch_loss, output_head
    from persona_tui.training.mlx_study import open_mlx_study

    study = open_mlx_study(
        scenario, folder, list(scenario.training_conditions), PARAMS, lambda e: None
    )
    learns, plays = study.datasets
    batch = [learns.train[0], plays.train[1], learns.train[2]]
    model: Any = mlx_lm.load(str(folder))[0]
    add_lora(model, PARAMS, 5)
    for _, module in model.named_modules():
        if hasattr(module, "lora_b"):
            module.lora_b = mx.random.normal(module.lora_b.shape, key=mx.random.key(1)) * 0.05
    assert output_head(model) is not None
    full, full_grads = nn.value_and_grad(model, lambda m, b: batch_loss(m, b, full_logits=True))(
        model, batch
    )
    skip, skip_grads = nn.value_and_grad(model, batch_loss)(model, batch)
    assert abs(full.item() - skip.item()) < 1e-5 * abs(full.item())
    from mlx.utils import tree_flatten

    for (name, a), (_, b) in zip(tree_flatten(full_grads), tree_flatten(skip_grads), strict=True):
        assert mx.allclose(a, b, rtol=1e-4, atol=1e-6).item(), name


def test_precision_is_a_torch_setting(folder: Path, scenario: Scenario, tmp_path: Path) -> None:
    from dataclasses import replace

    with pytest.raises(TrainingError, match="MLX trains in its model's own dtype"):
        train_study(scenario, folder, tmp_path / "out", replace(PARAMS, precision="bf16"))
