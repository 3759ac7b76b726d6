"""Training throughput: tokens/s of the torch CPU LoRA loop (`persona-tui train`'s engine).

Builds a synthetic training study (examples of about `--tokens` tokens each, transcript
mode), trains one condition for `--steps` optimizer steps at `--batch-size`, and prints the
seconds per step and tokens/s (prompt + completion tokens, pads excluded) of the steps after
the first (the first one warms up the kernels). The float32 weights are converted once and
cached under a temporary PERSONA_TUI_HOME unless `--home` names one.

    python bench/bench_train.py [--model PATH|demo] [--steps 4] [--batch-size 4]
                                [--tokens 140] [--rank 8] [--threads N] [--home DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def _study(examples: int, words: int) -> str:
    vocabulary = ["hello", "you", "are", "the", "world", "and", "what", "play", "bully"]
    rows = []
    for i in range(examples):
        answer = " ".join(vocabulary[(i + j) % len(vocabulary)] for j in range(words))
        rows.append(
            f'[[training.examples]]\nuser = "what {vocabulary[i % 9]} {i}?"\n'
            f'assistant = "{answer}."\n'
        )
    return (
        'id = "bench-train"\ntitle = "Training bench"\nprompt_mode = "transcript"\n\n'
        "[training]\nheldout = 0\nseed = 1\n\n" + "\n".join(rows) + "\n"
        '[[conditions]]\nid = "learns"\nlabel = "Learns"\n[conditions.training]\n'
        'user = "{user}"\n\n[[probes]]\nid = "p"\ntext = "Hello?"\n'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=140, help="about this many per example")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--home", type=Path)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-train-"))
    os.environ["PERSONA_TUI_HOME"] = str(home)

    from persona_tui.models.discovery import demo_model_path
    from persona_tui.scenario.parse import parse_scenario
    from persona_tui.training.params import StepFinished, TrainingEvent, TrainingParams
    from persona_tui.training.study import train_study

    model = demo_model_path() if args.model == "demo" else Path(args.model)
    examples = args.batch_size * args.steps
    scenario = parse_scenario(_study(examples, max(1, args.tokens - 12)), "bench-train.toml")
    steps: list[tuple[float, StepFinished]] = []

    def on_event(event: TrainingEvent) -> None:
        if isinstance(event, StepFinished):
            steps.append((time.perf_counter(), event))

    params = TrainingParams(
        rank=args.rank,
        alpha=2.0 * args.rank,
        batch_size=args.batch_size,
        max_steps=args.steps,
        checkpoint_every=10**6,
        threads=args.threads,
    )
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        train_study(scenario, model, Path(out), params, on_event)
        total = time.perf_counter() - started
    import torch

    print(
        f"model {model.name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}"
    )
    print(
        f"{len(steps)} steps of batch {args.batch_size}, rank {args.rank}; wall {total:.1f}s "
        "(incl. loading)"
    )
    if len(steps) >= 2:
        (t0, _), (t1, _) = steps[0], steps[-1]
        per_step = (t1 - t0) / (len(steps) - 1)
        first_rate = steps[-1][1].tokens_per_second
        print(f"seconds per step (after the first): {per_step:.3f}")
        print(f"tokens/s (all steps, as the progress bar shows): {first_rate:.1f}")


if __name__ == "__main__":
    main()
