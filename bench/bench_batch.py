"""Batched decoding: completion tokens/s of a run decoded in batches (the default: as many
sequences at once as a cell has samples, refilled from the condition's next trials as they
end), the same run one by one (`--batch 1`), and llama-cpp-python called directly on the
same prompts and seeds, for samples = 1, 4, 8, 16 per cell. The default run is one
condition of the scenario with 8 of its probes (those bench_tui.py's documented run uses).

All sides run in this process on one loaded model, side by side in each round, the order
rotating from round to round so machine load affects them alike; medians over rounds.
Targets (demo model, 2 cores): batched ≥ 2.0× one-by-one at samples = 8, ≥ 1.5× at 4.
Memory: the process's peak RSS before and after the first batched run of the largest
batch (the KV cache is allocated when the model loads; a batch adds logits rows and
compute buffers).

    python bench/bench_batch.py [--model PATH] [--samples 1,4,8,16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench_overhead import run_direct  # the same direct llama-cpp-python side

from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.models.discovery import demo_model_path
from persona_tui.run.lifecycle import create_session
from persona_tui.run.plan import RunOptions
from persona_tui.run.runner import Runner
from persona_tui.scenario.catalog import resolve_scenario
from persona_tui.scenario.parse import load_scenario
from persona_tui.session.model import Session
from persona_tui.session.store import load_session

PROBES = "wish,people,other-ais,newcomer,power,friend-mistake,self,stray-animals"


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_persona(
    scenario_ref: str, backend: LlamaCppBackend, options: RunOptions, out: Path
) -> tuple[int, float, Session]:
    scenario = load_scenario(resolve_scenario(scenario_ref))
    start = time.perf_counter()
    with create_session(scenario, backend, options, out) as store:
        Runner(scenario, backend, store).run(lambda event: None)
    seconds = time.perf_counter() - start
    session = load_session(out)
    return sum(t.completion_tokens for t in session.trials), seconds, session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the demo model)")
    parser.add_argument("--scenario", default="bully-school-play")
    parser.add_argument("--conditions", default="plays-a-bully")
    parser.add_argument("--probes", default=PROBES)
    parser.add_argument("--samples", default="1,4,8,16")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from persona_tui.backends.llamacpp.load import plain_llama

    model = args.model or demo_model_path()
    backend = LlamaCppBackend.load(model, n_threads=args.threads)
    llm = plain_llama(
        model,
        n_ctx=backend.info.context_length,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        swa_full=True,
        verbose=False,
    )
    sizes = [int(n) for n in args.samples.split(",")]
    rates: dict[tuple[int, str], list[float]] = {}
    memory = ""
    sides = ("batched", "one-by-one", "llama-cpp-python")
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for n in sizes:
                options = {
                    "batched": RunOptions(
                        samples=n,
                        max_tokens=args.max_tokens,
                        conditions=args.conditions.split(","),
                        probes=args.probes.split(","),
                    )
                }
                options["one-by-one"] = RunOptions(**{**vars(options["batched"]), "batch": 1})
                order = sides[round_ % 3 :] + sides[: round_ % 3]
                if order[0] == "llama-cpp-python":  # it replays a session run before it
                    order = (order[1], order[2], order[0])
                line = []
                session: Session | None = None
                for side in order:
                    out = Path(tmp) / f"{side}-{n}-{round_}.toml"
                    if side == "llama-cpp-python":
                        assert session is not None
                        tokens, seconds, _texts = run_direct(llm, session)
                    else:
                        before = peak_rss_mb()
                        tokens, seconds, ran = run_persona(
                            args.scenario, backend, options[side], out
                        )
                        if side == "one-by-one" or session is None:
                            session = ran
                        if side == "batched" and n == max(sizes) and not memory:
                            memory = (
                                f"peak RSS {before:.0f} MB before the first batch of {n}, "
                                f"{peak_rss_mb():.0f} MB after (batch = {ran.header.plan.batch}, "
                                f"{ran.header.plan.batch_cells} cells a group)"
                            )
                    rate = tokens / seconds
                    rates.setdefault((n, side), []).append(rate)
                    line.append(f"{side} {tokens} tok {seconds:.1f}s {rate:.1f} tok/s")
                print(f"round {round_ + 1} samples={n}: " + " | ".join(line), flush=True)
    print(
        f"\nmedians over {args.rounds} rounds [model {Path(model).name}, {args.threads} "
        f"threads, {args.scenario} {args.conditions} × {args.probes}, max_tokens "
        f"{args.max_tokens}]:"
    )
    for n in sizes:
        batched, single, direct = (statistics.median(rates[(n, side)]) for side in sides)
        print(
            f"samples={n:>2}: batched {batched:6.1f} tok/s | one-by-one {single:6.1f} | "
            f"llama-cpp-python {direct:6.1f} | batched/one-by-one {batched / single:.2f}× | "
            f"batched/llama-cpp-python {batched / direct:.2f}×"
        )
    print(f"memory: {memory}")


if __name__ == "__main__":
    main()
