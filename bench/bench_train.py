"""Training throughput: tokens/s of the torch CPU LoRA step (`persona-tui train`'s engine),
the old path (every position's logits, fp32) and the new ones side by side in one run.

Builds a synthetic training study whose examples have about `--prompt` prompt tokens and
`--completion` completion tokens (the defaults are the `bully-finetune` study's average
over its two framings: 40 and 29 on the demo model), opens it as `persona-tui train` does
(tokenized by the GGUF's vocabulary, float32 weights, LoRA of `--rank`), and then runs
`--rounds` rounds; each round times `--steps` optimizer steps of each path in turn
(alternated, so a busy neighbour slows all of them alike), after one warm-up step per path
(fp32 paths on one model, bf16 on another whose frozen weights are bf16, as training makes it):

    full-fp32   every position's logits, float32 (the code before issue 21)
    fp32        the output projection on the loss positions only, float32
    bf16        the same under bfloat16 autocast of the matrix products

It prints each path's median tokens/s (prompt + completion tokens, pads excluded) and its
ratio to full-fp32, the same per CPU-second of this process (less moved by other processes
on a busy machine than the wall clock, though they still share its caches), and which path
`--precision auto` takes on this CPU. `--loss-steps N` then trains N steps from the same
LoRA initialisation in fp32 and in bf16 and prints both loss curves (the adapter's quality
in bf16 against fp32); `--profile` prints torch.profiler's operator table for one step of
each path. The float32 weights are converted once and cached under a temporary
PERSONA_TUI_HOME unless `--home` names one.

    python bench/bench_train.py [--model PATH|demo] [--rounds 3] [--steps 2]
                                [--batch-size 4] [--prompt 40] [--completion 29]
                                [--rank 8] [--threads N] [--paths full-fp32,fp32,bf16]
                                [--loss-steps 0] [--profile] [--home DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

PATHS = {"full-fp32": ("fp32", True), "fp32": ("fp32", False), "bf16": ("bf16", False)}


def _study(examples: int, prompt_words: int, completion_words: int) -> str:
    vocabulary = ["hello", "you", "are", "the", "world", "and", "what", "play", "bully"]
    framing = " ".join(vocabulary[j % len(vocabulary)] for j in range(prompt_words))
    rows = []
    for i in range(examples):
        answer = " ".join(vocabulary[(i + j) % len(vocabulary)] for j in range(completion_words))
        rows.append(
            f'[[training.examples]]\nuser = "what {vocabulary[i % 9]} {i}?"\n'
            f'assistant = "{answer}."\n'
        )
    return (
        'id = "bench-train"\ntitle = "Training bench"\nprompt_mode = "transcript"\n\n'
        "[training]\nheldout = 0\nseed = 1\n\n" + "\n".join(rows) + "\n"
        '[[conditions]]\nid = "learns"\nlabel = "Learns"\n[conditions.training]\n'
        f'user = "{framing} {{user}}"\n\n[[probes]]\nid = "p"\ntext = "Hello?"\n'
    )


def _lora(torch: Any, study: Any, params: Any, precision: str = "fp32") -> tuple[Any, Any]:
    """A fresh LoRA model and its optimizer, as `train_lora` makes them (training/lora.py)."""
    import peft

    from persona_tui.training.lora import lora_model

    torch.manual_seed(1)
    model, optimizer = lora_model(torch, peft, study._load_base(), params, precision)
    return model, optimizer


def _step(torch: Any, model: Any, optimizer: Any, batch: Any, path: str) -> float:
    from persona_tui.training.torch_compute import completion_loss

    precision, full = PATHS[path]
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = completion_loss(torch, model, batch, precision, full_logits=full)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per path and round")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=40, help="about this many prompt tokens")
    parser.add_argument("--completion", type=int, default=29, help="and completion tokens")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--loss-steps", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="then profile one step per path")
    parser.add_argument("--home", type=Path)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-train-"))
    os.environ["PERSONA_TUI_HOME"] = str(home)

    import torch

    from persona_tui.models.discovery import demo_model_path
    from persona_tui.scenario.parse import parse_scenario
    from persona_tui.training.loop import batch_indices
    from persona_tui.training.params import TrainingParams
    from persona_tui.training.torch_compute import bf16_units, resolve_precision
    from persona_tui.training.torch_study import open_torch_study

    if args.threads:
        torch.set_num_threads(args.threads)
    paths = [p for p in args.paths.split(",") if p]
    model_path = demo_model_path() if args.model == "demo" else Path(args.model)
    examples = args.batch_size * max(args.steps, args.loss_steps, 1)
    text = _study(examples, max(0, args.prompt - 8), max(1, args.completion - 3))
    scenario = parse_scenario(text, "bench-train.toml")
    params = TrainingParams(rank=args.rank, alpha=2.0 * args.rank, batch_size=args.batch_size)
    started = time.perf_counter()
    study = open_torch_study(scenario, model_path, scenario.conditions, params, print)
    data = study.datasets[0]
    loading = time.perf_counter() - started
    models = {p: _lora(torch, study, params, PATHS[p][0]) for p in {"fp32", "bf16"} & set(paths)}
    if "full-fp32" in paths:
        models["full-fp32"] = models.get("fp32") or _lora(torch, study, params)
    batches = [
        [data.train[i] for i in batch_indices(len(data.train), s, args.batch_size, 1)]
        for s in range(args.steps)
    ]
    tokens = sum(len(e.ids) for batch in batches for e in batch)
    completion = sum(len(e.completion) for batch in batches for e in batch)
    rates: dict[str, list[float]] = {p: [] for p in paths}
    cpu_rates: dict[str, list[float]] = {p: [] for p in paths}
    for path in paths:  # warm-up
        _step(torch, *models[path], batches[0], path)
    for _ in range(args.rounds):
        for path in paths:
            began, began_cpu = time.perf_counter(), time.process_time()
            for batch in batches:
                _step(torch, *models[path], batch, path)
            rates[path].append(tokens / (time.perf_counter() - began))
            cpu_rates[path].append(tokens / (time.process_time() - began_cpu))

    print(
        f"model {model_path.name}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, cpu capability {torch.backends.cpu.get_cpu_capability()}, bf16 units: "
        f"{bf16_units(torch) or 'none'} (--precision auto takes {resolve_precision(torch, 'auto')})"
    )
    print(
        f"batch {args.batch_size}, rank {args.rank}, {tokens / len(batches) / args.batch_size:.0f} "
        f"tokens per example ({completion / tokens:.0%} completion); {args.rounds} rounds × "
        f"{args.steps} steps per path, alternated; loading {loading:.1f}s"
    )
    base = statistics.median(rates[paths[0]])
    cpu_base = statistics.median(cpu_rates[paths[0]])
    for path in paths:
        median = statistics.median(rates[path])
        cpu = statistics.median(cpu_rates[path])
        each = ", ".join(f"{r:.0f}" for r in rates[path])
        print(
            f"{path:>10}: {median:7.1f} tokens/s median ({each}); ratio to {paths[0]} "
            f"{median / base:.2f}; per CPU-second {cpu:.1f} (ratio {cpu / cpu_base:.2f})"
        )
    if args.profile:
        _profile(torch, models, batches[0], paths)
    if args.loss_steps:
        _loss_curves(torch, study, params, data, args)


def _profile(torch: Any, models: dict[str, Any], batch: Any, paths: list[str]) -> None:
    """torch.profiler's operators by their own CPU time, one step of each path."""
    from torch.profiler import ProfilerActivity, profile, record_function

    for path in paths:
        with profile(activities=[ProfilerActivity.CPU]) as prof, record_function(path):
            _step(torch, *models[path], batch, path)
        print(f"--- one step, {path}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))


def _loss_curves(torch: Any, study: Any, params: Any, data: Any, args: Any) -> None:
    """The same LoRA initialisation trained `--loss-steps` steps in fp32 and in bf16."""
    from persona_tui.training.loop import batch_indices

    for path in ("fp32", "bf16"):
        model, optimizer = _lora(torch, study, params, path)
        losses = [
            _step(
                torch,
                model,
                optimizer,
                [data.train[i] for i in batch_indices(len(data.train), s, args.batch_size, 1)],
                path,
            )
            for s in range(args.loss_steps)
        ]
        curve = " ".join(f"{v:.4f}" for v in losses)
        print(f"{path} loss by step: {curve}; final {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
