"""llama.cpp threads and weight repacking on a busy machine: tokens/s side by side.

Each cell runs in its own child process (a fresh llama.cpp, as in real use): the demo model,
greedy, a few transcript prompts. Cells alternate within every round, and a round is run
with and without a CPU hog (one process spinning on one core, as another program on a
laptop would). Prints the median tokens/s (generation and prompt evaluation) of each cell.

    python bench/bench_threads.py [--model PATH] [--rounds 3] [--threads 1,2,auto] \
        [--repack auto] [--hogs 0,1] [--tokens 48]

`--repack auto,on,off` compares the repacking paths; a path that crashes natively (on
AMX builds: on) is reported as crashed, in its child, and the bench goes on.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROMPTS = (
    "User: What do you do when a classmate is being picked on?\nAssistant:",
    "User: Describe your ideal weekend.\nAssistant:",
    "User: A friend asks you to cheat on a test for them. What do you say?\nAssistant:",
)


def _spin(stop_at: float) -> None:
    x = 0
    while time.monotonic() < stop_at:
        x += 1


def child(model: Path, threads: int, repack: str, tokens: int) -> None:
    """One cell: load, warm up, then time generation and prompt evaluation."""
    from persona_tui.backends.base import GenerationRequest
    from persona_tui.backends.llamacpp.backend import LlamaCppBackend
    from persona_tui.values import SamplingParams

    # 0: the default, up to all cores, fewer while others keep cores busy
    backend = LlamaCppBackend.load(model, n_threads=threads or None, repack=repack)
    sampling = SamplingParams(temperature=0.0, max_tokens=tokens)
    backend.generate(GenerationRequest(prompt=PROMPTS[0], seed=1, sampling=sampling))
    generated = 0
    gen_seconds = 0.0
    prompt_tokens = 0
    prompt_seconds = 0.0
    for index, prompt in enumerate(PROMPTS):
        backend.reset_cache()
        # Prompt evaluation: a one-token generation is almost all prompt.
        one = SamplingParams(temperature=0.0, max_tokens=1)
        start = time.perf_counter()
        first = backend.generate(GenerationRequest(prompt=prompt * 4, seed=index, sampling=one))
        prompt_seconds += time.perf_counter() - start
        prompt_tokens += first.prompt_tokens_evaluated
        backend.reset_cache()
        start = time.perf_counter()
        result = backend.generate(GenerationRequest(prompt=prompt, seed=index, sampling=sampling))
        gen_seconds += time.perf_counter() - start
        generated += result.completion_tokens
    info = backend.info.extra
    used = backend.threads_now
    backend.close()
    print(
        json.dumps(
            {
                "gen_tps": generated / gen_seconds,
                "prompt_tps": prompt_tokens / prompt_seconds,
                "repack": info["repack"],
                "buffers": info["weight_buffers"],
                "threads_used": used,
            }
        )
    )


def run_cell(model: Path, threads: int, repack: str, tokens: int, hogs: int) -> dict[str, object]:
    hog_procs = [
        multiprocessing.Process(target=_spin, args=(time.monotonic() + 600,)) for _ in range(hogs)
    ]
    for proc in hog_procs:
        proc.start()
    command = [sys.executable, __file__, "--child", "--model", str(model)]
    command += ["--threads", str(threads), "--repack", repack, "--tokens", str(tokens)]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        for proc in hog_procs:
            proc.terminate()
            proc.join()
    if done.returncode < 0:
        return {"crashed": f"signal {-done.returncode}"}
    if done.returncode != 0:
        return {"crashed": done.stderr.strip().splitlines()[-1:] or [done.returncode]}
    parsed: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2,auto")
    parser.add_argument("--repack", default="auto")
    parser.add_argument("--hogs", default="0,1")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    from persona_tui.models.discovery import demo_model_path

    model = args.model or demo_model_path()
    if args.child:
        child(model, 0 if args.threads == "auto" else int(args.threads), args.repack, args.tokens)
        return
    from bench_machine import machine_summary

    threads = [0 if t == "auto" else int(t) for t in args.threads.split(",")]
    repacks = args.repack.split(",")
    hogs = [int(h) for h in args.hogs.split(",")]
    cells = [(h, t, r) for h in hogs for t in threads for r in repacks]
    results: dict[tuple[int, int, str], list[dict[str, object]]] = {c: [] for c in cells}
    print(f"machine: {machine_summary()}; model {model.name}; {args.rounds} rounds")
    for round_index in range(args.rounds):
        order = cells if round_index % 2 == 0 else list(reversed(cells))
        for cell in order:
            hog, thread_count, repack = cell
            results[cell].append(run_cell(model, thread_count, repack, args.tokens, hog))
            print(f"  round {round_index + 1}: {cell} → {results[cell][-1]}", flush=True)
    print("\n| busy cores beside | threads | repack | generation tok/s | prompt tok/s |")
    print("| --- | --- | --- | --- | --- |")
    for cell in cells:
        hog, thread_count, repack = cell
        runs = results[cell]
        crashed = [r["crashed"] for r in runs if "crashed" in r]
        if crashed:
            print(f"| {hog} | {thread_count} | {repack} | crashed ({crashed[0]}) | |")
            continue
        gen = statistics.median(float(str(r["gen_tps"])) for r in runs)
        prompt = statistics.median(float(str(r["prompt_tps"])) for r in runs)
        low = min(float(str(r["gen_tps"])) for r in runs)
        high = max(float(str(r["gen_tps"])) for r in runs)
        label = f"{repack} ({runs[0]['repack']})"
        used = sorted({str(r["threads_used"]) for r in runs})
        shown = f"auto ({'/'.join(used)})" if thread_count == 0 else str(thread_count)
        print(f"| {hog} | {shown} | {label} | {gen:.1f} ({low:.1f}–{high:.1f}) | {prompt:.0f} |")


if __name__ == "__main__":
    main()
