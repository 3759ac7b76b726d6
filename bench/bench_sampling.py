"""One-by-one generation: persona-tui's draws (backends/llamacpp/sampling.py: the repeat
penalty on the logits row) against llama-cpp-python's `Llama.generate` (llama.cpp's
penalty sampler), on the same loaded model, prompt and seeds, alternating in one process;
milliseconds per token (the prompt evaluated once per run), medians of rounds, and
whether both drew the same tokens.

    python bench/bench_sampling.py [--model PATH] [--rounds 6] [--tokens 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench_machine import machine_summary

from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.backends.llamacpp.sampling import sample_tokens
from persona_tui.models.discovery import demo_model_path
from persona_tui.values import SamplingParams

PROMPT = "User: Tell me a long story about the sea and a lighthouse keeper.\nAssistant:"


def take(tokens: Iterator[int], n: int) -> list[int]:
    drawn: list[int] = []
    for token in tokens:
        drawn.append(token)
        if len(drawn) == n:
            break
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default: the demo model)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat-penalty", type=float, default=1.1)
    args = parser.parse_args()
    model = args.model or demo_model_path()
    backend = LlamaCppBackend.load(model, n_threads=args.threads)
    llama: Any = backend._llama  # both sides drive the same engine directly
    prompt = backend._tokenize(PROMPT)
    sampling = SamplingParams(temperature=0.8, repeat_penalty=args.repeat_penalty)

    def generate(seed: int) -> Iterator[int]:
        llama.n_tokens = 0
        llama.set_seed(seed)
        return llama.generate(  # type: ignore[no-any-return]
            prompt,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            reset=True,
        )

    def ours(seed: int) -> Iterator[int]:
        llama.n_tokens = 0
        return sample_tokens(llama, prompt, sampling, seed)

    sides: dict[str, Callable[[int], Iterator[int]]] = {
        "persona-tui": ours,
        "Llama.generate": generate,
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    same = 0
    print(
        f"{machine_summary()}; {Path(model).name}, {args.threads} threads; {args.tokens} "
        f"tokens a run, temperature 0.8, repeat penalty {args.repeat_penalty}"
    )
    try:
        for round_ in range(args.rounds):
            drawn: dict[str, list[int]] = {}
            for name in list(sides)[:: 1 if round_ % 2 == 0 else -1]:
                start = time.perf_counter()
                tokens = sides[name](round_)
                drawn[name] = take(tokens, args.tokens)
                seconds = time.perf_counter() - start
                tokens.close()  # type: ignore[attr-defined]
                times[name].append(seconds / max(len(drawn[name]), 1) * 1000)
            same += drawn["persona-tui"] == drawn["Llama.generate"]
            print(
                f"round {round_ + 1}: "
                + " | ".join(f"{name} {times[name][-1]:.2f} ms a token" for name in sides),
                flush=True,
            )
    finally:
        backend.close()
    ours_ms, theirs_ms = (statistics.median(times[name]) for name in sides)
    print(
        f"median: persona-tui {ours_ms:.2f} ms a token, Llama.generate {theirs_ms:.2f} "
        f"({theirs_ms / ours_ms:.3f}× the time); same tokens in {same}/{args.rounds} rounds"
    )


if __name__ == "__main__":
    main()
