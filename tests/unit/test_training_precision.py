"""The torch training step's speed-ups keep its results: the output projection on the loss
positions only (training/torch_compute.py) gives the full-logits loss, gradients and adapter;
bf16 autocast is chosen from the CPU, deterministic, and recorded; `--precision` sets it.

On the tiny GGUF (tests/tiny_gguf.py, a llama) through the production route (transformers
reads it into float32 weights, peft adds the LoRA layers)."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
pytest.importorskip("transformers")

from persona_tui._util.hashing import sha256_file  # noqa: E402
from persona_tui.scenario.parse import parse_scenario  # noqa: E402
from persona_tui.training.data import tokenize_condition, vocabulary  # noqa: E402
from persona_tui.training.hf import load_float32_model  # noqa: E402
from persona_tui.training.params import TrainingParams  # noqa: E402
from persona_tui.training.study import train_study  # noqa: E402
from persona_tui.training.torch_compute import (  # noqa: E402
    completion_loss,
    frozen_weights_in_bf16,
    output_head,
    resolve_precision,
)
from tests.tiny_gguf import write_tiny_gguf  # noqa: E402
from tests.unit.test_training import study_text  # noqa: E402

torch.set_num_threads(1)
PARAMS = TrainingParams(max_steps=3, lr=1e-2, batch_size=3, checkpoint_every=10, threads=1)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("precision-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERSONA_TUI_HOME", str(folder))
        yield folder


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("precision-model") / "tiny.gguf", seed=3)


@pytest.fixture(scope="module")
def batch(model: Path) -> list[Any]:
    """Examples of different prompt and completion lengths (right padding, both framings)."""
    scenario = parse_scenario(study_text(), "tiny-finetune.toml")
    with vocabulary(model) as vocab:
        learns = tokenize_condition(scenario, scenario.condition("learns"), vocab, 1024)
        plays = tokenize_condition(scenario, scenario.condition("plays"), vocab, 1024)
    return [learns.train[0], plays.train[1], learns.train[2]]


def lora_model(model: Path, home: Path, seed: int = 1) -> Any:
    """The tiny model with LoRA layers whose B matrices are non-zero (so every LoRA matrix
    has a gradient)."""
    torch.manual_seed(seed)
    base = load_float32_model(model, sha256_file(model))
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    lora = peft.get_peft_model(base, config)
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    return lora


def loss_and_grads(lora: Any, batch: list[Any], precision: str, full: bool) -> tuple[float, Any]:
    lora.zero_grad(set_to_none=True)
    loss = completion_loss(torch, lora, batch, precision, full_logits=full)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in lora.named_parameters() if p.requires_grad}
    return float(loss.detach()), grads


def test_the_loss_on_completion_positions_only_equals_the_full_logits_loss(
    model: Path, home: Path, batch: list[Any]
) -> None:
    lora = lora_model(model, home)
    assert output_head(lora) is not None  # the skip is taken on this architecture
    full, full_grads = loss_and_grads(lora, batch, "fp32", full=True)
    skip, skip_grads = loss_and_grads(lora, batch, "fp32", full=False)
    assert abs(full - skip) < 1e-5 * abs(full)
    for name, grad in full_grads.items():
        torch.testing.assert_close(skip_grads[name], grad, rtol=1e-4, atol=1e-6)
    # The same in bf16 (the rows are the same; only the rounding of bf16 products moves).
    full16, _ = loss_and_grads(lora, batch, "bf16", full=True)
    skip16, _ = loss_and_grads(lora, batch, "bf16", full=False)
    assert abs(full16 - skip16) < 2e-2 and abs(skip16 - skip) < 5e-2


def test_the_final_logit_soft_cap_is_applied_to_the_gathered_logits(
    model: Path, home: Path, batch: list[Any]
) -> None:
    lora = lora_model(model, home)
    lora.zero_grad()
    with torch.no_grad():
        ids = torch.tensor([list(batch[0].ids)])
        logits = lora(input_ids=ids).logits[0, :-1]  # llama's forward: no soft-cap
        capped = torch.tanh(logits / 3.0) * 3.0
        start = len(batch[0].prompt) - 1
        expected = torch.nn.functional.cross_entropy(capped[start:], ids[0, start + 1 :])
        lora.get_base_model().config.final_logit_softcapping = 3.0
        got = completion_loss(torch, lora, batch[:1], "fp32")
    assert abs(float(got) - float(expected)) < 1e-5
    # An output scaling this code does not reproduce: the model's own forward, all logits.
    lora.get_base_model().config.logit_scale = 0.5
    assert output_head(lora) is None


def test_the_adapter_trained_without_prompt_logits_equals_the_full_logits_one(
    model: Path, home: Path, batch: list[Any]
) -> None:
    adapters = []
    for full in (True, False):
        lora = lora_model(model, home)
        optimizer = torch.optim.AdamW(
            [p for p in lora.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0
        )
        for _ in range(3):
            optimizer.zero_grad()
            completion_loss(torch, lora, batch, "fp32", full_logits=full).backward()
            optimizer.step()
        adapters.append(peft.get_peft_model_state_dict(lora))
    for name, value in adapters[0].items():
        torch.testing.assert_close(adapters[1][name], value, rtol=0, atol=1e-5)


def test_bf16_weights_made_once_give_what_autocast_casts_each_time(
    model: Path, home: Path, batch: list[Any]
) -> None:
    lora = lora_model(model, home)
    cast_each_time, grads = loss_and_grads(lora, batch, "bf16", full=False)
    assert frozen_weights_in_bf16(torch, lora) > 0
    cast_once, grads_once = loss_and_grads(lora, batch, "bf16", full=False)
    assert cast_once == cast_each_time
    for name, grad in grads.items():
        assert torch.equal(grads_once[name], grad)
        assert dict(lora.named_parameters())[name].dtype == torch.float32  # LoRA stays fp32


class _Cpu:
    def __init__(self, amx: bool, avx512_bf16: bool) -> None:
        self._is_amx_tile_supported = lambda: amx
        self._is_avx512_bf16_supported = lambda: avx512_bf16


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "auto"),
    [(True, False, "bf16"), (False, True, "bf16"), (True, True, "bf16"), (False, False, "fp32")],
)
def test_auto_precision_is_bf16_where_the_cpu_has_bf16_matrix_units(
    amx: bool, avx512_bf16: bool, auto: str
) -> None:
    fake = argparse.Namespace(cpu=_Cpu(amx, avx512_bf16))
    assert resolve_precision(fake, "auto") == auto
    assert resolve_precision(fake, "fp32") == "fp32"
    assert resolve_precision(fake, "bf16") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision(fake, "fp16")


def test_fingerprints_of_fp32_are_those_made_before_precision_was_a_setting() -> None:
    fields = TrainingParams(precision="fp32").fingerprint_fields()
    assert "precision" not in fields
    assert TrainingParams(precision="bf16").fingerprint_fields()["precision"] == "bf16"


def test_the_precision_flag(tmp_path: Path) -> None:
    from persona_tui.cli.main import build_parser
    from persona_tui.cli.train import resume_command, training_params

    parser = build_parser()
    for command in ("train", "study"):
        args = parser.parse_args([command, "s.toml", "--precision", "bf16"])
        assert training_params(args).precision == "bf16"
        assert "--precision bf16" in resume_command(args, tmp_path, command)
        assert training_params(parser.parse_args([command, "s.toml"])).precision == "auto"
        with pytest.raises(SystemExit):
            parser.parse_args([command, "s.toml", "--precision", "fp16"])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_same_adapter_bytes_per_precision_and_the_record_says_which(
    model: Path, home: Path, tmp_path: Path, precision: str
) -> None:
    from dataclasses import replace

    scenario = parse_scenario(study_text(), "tiny-finetune.toml")
    params = replace(PARAMS, precision=precision)
    made = [
        train_study(scenario, model, tmp_path / name, params, conditions=["plays"])
        for name in ("one", "two")
    ]
    first, second = (m.results[0].adapter for m in made)
    assert first is not None and second is not None
    assert first.read_bytes() == second.read_bytes()
    record = tomllib.loads((first.parent / "training.toml").read_text(encoding="utf-8"))
    assert record["hyperparameters"]["precision"] == precision
    assert record["adapter"]["trained_precision"] == precision
    assert record["machine"]["cpu_bf16_units"] in {"amx", "avx512_bf16", "none"}
    assert "autocast" in record["hyperparameters"]["precision_detail"] or precision == "fp32"
