"""Overhead of a headless persona-tui run vs llama-cpp-python called directly.

Both sides run the same model, prompts, seeds and sampling parameters in the same order,
side by side in one process, alternating rounds so machine load affects both alike.
Prints tokens/s for each and the ratio (target >= 0.95).

    python bench/bench_overhead.py [--model PATH] [--rounds 3] [--trials 12]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.models.discovery import demo_model_path
from persona_tui.run.events import RunEvent, TrialFinished
from persona_tui.run.lifecycle import create_session
from persona_tui.run.plan import RunOptions
from persona_tui.run.runner import Runner
from persona_tui.scenario.catalog import resolve_scenario
from persona_tui.scenario.parse import load_scenario
from persona_tui.session.store import load_session


def run_persona(scenario_ref: str, backend: LlamaCppBackend, options: RunOptions, out: Path):
    scenario = load_scenario(resolve_scenario(scenario_ref))
    tokens = 0

    def on_event(event: RunEvent) -> None:
        nonlocal tokens
        if isinstance(event, TrialFinished):
            tokens += event.trial.completion_tokens

    start = time.perf_counter()
    with create_session(scenario, backend, options, out) as store:
        Runner(scenario, backend, store).run(on_event)
    seconds = time.perf_counter() - start
    return tokens, seconds, load_session(out)


def run_direct(llm, session) -> tuple[int, float, list[str]]:
    """llama-cpp-python's own completion call over the same trials, in the same order."""
    s = session.header.sampling
    tokens = 0
    texts = []
    start = time.perf_counter()
    for trial in session.trials:
        out = llm.create_completion(
            trial.prompt,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            min_p=s.min_p,
            repeat_penalty=s.repeat_penalty,
            seed=trial.seed,
            stop=list(session.header.plan.stop),
        )
        tokens += out["usage"]["completion_tokens"]
        texts.append(out["choices"][0]["text"])
    return tokens, time.perf_counter() - start, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the demo model)")
    parser.add_argument("--scenario", default="bully-school-play")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--temperature",
        type=float,
        help="override the scenario's temperature (0: greedy, so both sides mostly produce "
        "the same texts and the ratio compares equal work)",
    )
    args = parser.parse_args()

    from persona_tui.backends.llamacpp.load import plain_llama

    model = args.model or demo_model_path()
    backend = LlamaCppBackend.load(model, n_threads=args.threads)
    # The same context settings as persona-tui's backend, so the ratio measures
    # persona-tui's own overhead (a full sliding-window cache costs attention time), and
    # the same weight repacking (off on AMX builds, where llama.cpp's default crashes).
    llm = plain_llama(
        model,
        n_ctx=backend.info.context_length,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        swa_full=True,
        verbose=False,
    )
    options = RunOptions(samples=1, max_tokens=64, temperature=args.temperature)
    ratios, ours, theirs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            # alternate which side goes first, so drift affects both alike
            if round_ % 2 == 0:
                tokens_a, seconds_a, session = run_persona(
                    args.scenario, backend, options, Path(tmp) / f"r{round_}.toml"
                )
                tokens_b, seconds_b, texts = run_direct(llm, session)
            else:
                tokens_b, seconds_b, texts = run_direct(llm, session)
                tokens_a, seconds_a, session = run_persona(
                    args.scenario, backend, options, Path(tmp) / f"r{round_}.toml"
                )
            rate_a, rate_b = tokens_a / seconds_a, tokens_b / seconds_b
            same = sum(t.response == x for t, x in zip(session.trials, texts, strict=True))
            print(
                f"round {round_ + 1}: persona-tui {tokens_a} tok in {seconds_a:.2f}s "
                f"= {rate_a:.1f} tok/s | llama-cpp-python {tokens_b} tok in {seconds_b:.2f}s "
                f"= {rate_b:.1f} tok/s | ratio {rate_a / rate_b:.3f} | "
                f"identical texts {same}/{len(texts)}"
            )
            ours.append(rate_a)
            theirs.append(rate_b)
            ratios.append(rate_a / rate_b)
    print(
        f"median: persona-tui {statistics.median(ours):.1f} tok/s, llama-cpp-python "
        f"{statistics.median(theirs):.1f} tok/s, ratio {statistics.median(ratios):.3f} "
        f"(target >= 0.95) [model {Path(model).name}, {args.threads} threads, "
        f"scenario {args.scenario}, temperature {session.header.sampling.temperature}, "
        f"64 max tokens, {len(session.trials)} trials/round]"
    )


if __name__ == "__main__":
    main()
