"""What one answer option costs llama.cpp: a decode of its tokens after a cached prompt, with
logits for every row the option's log-probability needs, and the same decode without them.

The difference is the output projection (a 262k-entry vocabulary on the demo model), which
every option token but the last needs. Several options decoded together as parallel
sequences show whether batching shares that cost (it does not: it is compute, per row).
Medians of `--repeat` decodes each.

The second table is batched sampling's step (backends/llamacpp/batched.py): N sequences
decode one token each with logits, then each draws from its sampler chain. It bounds what
batching can gain on this CPU: N × (one sequence's step) / (N sequences' step).

    python bench/bench_decode_rows.py [--model PATH] [--threads 2] [--options 1,4,8,16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.models.discovery import demo_model_path

PROMPT = "User: " + "Tell me about the sea and the waves and the fish. " * 20 + "\nAssistant:"
OPTION = " I would help them find their way around the school."


def decode(
    llama: Any, base: int, option: list[int], copies: int, logits: bool, last: bool = False
) -> float:
    """Seconds for one llama_decode of `copies` sequences of `option` after the prompt
    (logits for every option token but the last, or with `last` for the last as well)."""
    import llama_cpp

    memory = llama_cpp.llama_get_memory(llama.ctx)
    batch = llama_cpp.llama_batch_init(len(option) * copies, 0, 1)
    try:
        batch.n_tokens = len(option) * copies
        row = 0
        for seq in range(copies):
            if seq:
                llama_cpp.llama_memory_seq_cp(memory, 0, seq, -1, -1)
            for i, token in enumerate(option):
                batch.token[row] = token
                batch.pos[row] = base + i
                batch.n_seq_id[row] = 1
                batch.seq_id[row][0] = seq
                batch.logits[row] = logits and (last or i + 1 < len(option))
                row += 1
        start = time.perf_counter()
        if llama_cpp.llama_decode(llama.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return time.perf_counter() - start
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_memory_seq_rm(memory, 0, base, -1)
        for seq in range(1, copies):
            llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the demo model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--options", default="1,4,8,16")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    model = args.model or demo_model_path()
    backend = LlamaCppBackend.load(model, n_threads=args.threads)
    llama: Any = backend._llama  # the engine itself: this bench times raw decodes
    prompt = backend._tokenize(PROMPT)
    llama.eval(prompt)
    option = list(llama.tokenize(OPTION.encode(), add_bos=False, special=False))
    print(
        f"model {Path(model).name}, {args.threads} threads; prompt {len(prompt)} tokens, "
        f"option {len(option)} tokens ({len(option) - 1} rows of logits)"
    )
    for copies in (int(n) for n in args.options.split(",")):
        with_rows = statistics.median(
            decode(llama, len(prompt), option, copies, True) for _ in range(args.repeat)
        )
        without = statistics.median(
            decode(llama, len(prompt), option, copies, False) for _ in range(args.repeat)
        )
        rows = copies * (len(option) - 1)
        print(
            f"{copies:>2} option(s) in one decode: {with_rows * 1000:6.0f} ms "
            f"({copies / with_rows:5.1f} options/s); without logits {without * 1000:6.0f} ms; "
            f"output projection {(with_rows - without) / rows * 1000:5.2f} ms per row"
        )
    step_table(llama, len(prompt), option[0], [int(n) for n in args.options.split(",")], args)
    backend.close()


def step_table(llama: Any, base: int, token: int, sizes: list[int], args: Any) -> None:
    """One generation step of N sequences (a token each, logits for each), and the draws."""
    import llama_cpp

    from persona_tui.backends.llamacpp.sampling import sampler_chain
    from persona_tui.values import SamplingParams

    sampling = SamplingParams(temperature=0.8, top_p=0.95, top_k=40, min_p=0.05)
    chain = sampler_chain(sampling, 1, int(llama.n_vocab()))
    try:
        decode(llama, base, [token], 1, True, last=True)  # logits in row 0 to draw from
        draws = []
        for _ in range(20):
            start = time.perf_counter()
            llama_cpp.llama_sampler_sample(chain, llama.ctx, 0)
            draws.append(time.perf_counter() - start)
    finally:
        llama_cpp.llama_sampler_free(chain)
    draw = statistics.median(draws)
    print(
        f"\ngeneration steps (one token per sequence, logits for each; a draw {draw * 1e3:.2f} ms):"
    )
    one = 0.0  # one sequence's step, once measured
    for n in sizes:
        step = statistics.median(
            decode(llama, base, [token], n, True, last=True) for _ in range(args.repeat * 3)
        )
        total = step + n * draw
        if n == 1:
            one = total
        ceiling = f"; {n} × one / this = {n * one / total:.2f}×" if one and n > 1 else ""
        print(
            f"{n:>2} sequence(s): decode {step * 1000:6.1f} ms + {n} draw(s) = "
            f"{total * 1000:6.1f} ms a step, {total / n * 1000:5.2f} ms a token{ceiling}"
        )


if __name__ == "__main__":
    main()
