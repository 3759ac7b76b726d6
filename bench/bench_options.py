"""Likelihood probes: answer options scored per second, decoded together vs one by one.

The built-in `bully-school-play` scenario (its first `--probes` probes under its three
framings, 12 options each), on the demo model, side by side in one process, alternating
rounds; medians:

(a) the scoring pass (`score_options`): each prompt evaluated once (reusing the KV cache
    it shares with the previous one), then all the probe's options decoded together as
    parallel sequences sharing the prompt, each without its last token, with a float32
    log-sum-exp per row (backends/continuations.py);
(b) the path before it, written out here: the same prompts, then each option decoded alone
    after the prompt, its last token included, with a float64 log-softmax per row.

Then how far the two layouts' values lie apart: llama.cpp's CPU kernels round by tiles of
the batch, so the same token's log-probability differs between layouts (per token, and
per option summed over its tokens). Both are teacher-forced llama.cpp logits.

    python bench/bench_options.py [--model PATH] [--probes 6] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_machine import machine_summary

from persona_tui.backends.common import log_softmax
from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.models.discovery import demo_model_path
from persona_tui.run.lifecycle import create_session
from persona_tui.run.options import score_options, scored_text
from persona_tui.run.plan import RunOptions
from persona_tui.run.prompts import first_turn_prompt
from persona_tui.scenario.catalog import resolve_scenario
from persona_tui.scenario.model import Scenario
from persona_tui.scenario.parse import load_scenario
from persona_tui.session.model import Session

Values = dict[tuple[str, str, str], list[float]]


def new_pass(
    scenario: Scenario, backend: LlamaCppBackend, folder: Path
) -> tuple[float, Values, str]:
    store = create_session(scenario, backend, RunOptions(), folder / f"s{time.time_ns()}.toml")
    with store:
        clock = time.perf_counter()
        score_options(scenario, backend, store)
        seconds = time.perf_counter() - clock
        session: Session = store.session
    values = {
        (c.condition, c.probe, o.id): list(o.token_logprobs)
        for c in session.option_cells
        for o in c.options
    }
    return seconds, values, session.header.plan.prompt_mode


def old_pass(scenario: Scenario, backend: LlamaCppBackend, mode: str) -> tuple[float, Values]:
    """Each option alone after the prompt, its last token decoded too (the path before)."""
    import llama_cpp
    import numpy as np

    plan_mode: Any = mode
    values: Values = {}
    clock = time.perf_counter()
    with backend.logprob_scope() as scope:
        llama: Any = scope.llama  # type: ignore[attr-defined]
        memory = llama_cpp.llama_get_memory(llama.ctx)
        for condition in scenario.conditions:
            for probe in scenario.probes:
                if not probe.options:
                    continue
                prompt = first_turn_prompt(scenario, plan_mode, backend, condition.id, probe.id)
                tokens = scope.tokenize(prompt)
                first = scope.evaluate(tokens)
                base = len(tokens)
                for option in probe.options:
                    ids = scope.continuation(prompt, tokens, scored_text(plan_mode, option))
                    batch = llama_cpp.llama_batch_init(len(ids), 0, 1)
                    batch.n_tokens = len(ids)
                    for i, token in enumerate(ids):
                        batch.token[i], batch.pos[i] = token, base + i
                        batch.n_seq_id[i], batch.seq_id[i][0] = 1, 0
                        batch.logits[i] = i + 1 < len(ids)
                    assert llama_cpp.llama_decode(llama.ctx, batch) == 0
                    llama_cpp.llama_batch_free(batch)
                    row = [float(first[ids[0]])]
                    for i in range(len(ids) - 1):
                        logits = np.ctypeslib.as_array(
                            llama_cpp.llama_get_logits_ith(llama.ctx, i), shape=(scope.n_vocab,)
                        )
                        row.append(float(log_softmax(logits)[ids[i + 1]]))
                    llama_cpp.llama_memory_seq_rm(memory, -1, base, -1)
                    llama.n_tokens = base
                    values[(condition.id, probe.id, option.id)] = row
    return time.perf_counter() - clock, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: the demo model)")
    parser.add_argument("--probes", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model = args.model or demo_model_path()
    full = load_scenario(resolve_scenario("bully-school-play"))
    probes = tuple(p for p in full.probes if p.options)[: args.probes]
    scenario = dataclasses.replace(full, probes=probes)
    backend = LlamaCppBackend.load(model, n_ctx=2048, n_threads=args.threads)
    new_times: list[float] = []
    old_times: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for _ in range(args.rounds):
                seconds, new, mode = new_pass(scenario, backend, Path(folder))
                new_times.append(seconds)
                seconds, old = old_pass(scenario, backend, mode)
                old_times.append(seconds)
    finally:
        backend.close()
    plan_cells = len(scenario.conditions) * len(probes)
    n_options = len(new)
    rows = sum(len(v) - 1 for v in new.values())
    print(machine_summary())
    print(
        f"model: {model.name}, {args.threads} threads; {plan_cells} cells, {n_options} options, "
        f"{rows} rows of the output projection"
    )
    a, b = statistics.median(new_times), statistics.median(old_times)
    print(f"(a) options together: {n_options / a:7.1f} options/s  ({a:.2f} s; rounds {new_times})")
    print(f"(b) one by one:       {n_options / b:7.1f} options/s  ({b:.2f} s; rounds {old_times})")
    print(f"ratio (a)/(b): {b / a:.2f}x")
    token = max(abs(x - y) for k in new for x, y in zip(new[k], old[k], strict=True))
    option = max(abs(sum(new[k]) - sum(old[k])) for k in new)
    mean_option = statistics.fmean(abs(sum(new[k]) - sum(old[k])) for k in new)
    print(
        f"layouts apart: up to {token:.3f} nats per token; per option up to {option:.3f} "
        f"(mean {mean_option:.3f}) nats"
    )


if __name__ == "__main__":
    main()
