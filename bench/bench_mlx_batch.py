"""MLX batched decoding vs one sequence at a time: completion tokens/s, alternated rounds.

The engine level of what `MlxBackend.generate` (mlx-lm's generate_step) and
`MlxBackend.generate_batch` (mlx-lm's BatchGenerator with per-sequence keyed samplers,
backends/mlx/batched.py) do, on a random-weight llama built in memory (no download):

    python bench/bench_mlx_batch.py --shape tiny
    python bench/bench_mlx_batch.py --shape smollm-135m --bits 32 --tokens 8 --rounds 3
    python bench/bench_mlx_batch.py --shape smollm-135m --bits 4 --tokens 8 --rounds 3
    python bench/bench_mlx_batch.py --matmul     # how the CPU kernels scale with rows

Each round decodes the same seeds both ways (in alternation, so a busy machine slows both);
medians are printed, with whether both ways gave the same tokens.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHAPES: dict[str, dict[str, Any]] = {
    # tests/tiny_gguf.py's size.
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
    },
    # SmolLM2-135M's shape (the size of a small real model).
    "smollm-135m": {
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "intermediate_size": 1536,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
    },
}


def build(shape: str, bits: int) -> Any:
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.models import llama

    mx.random.seed(0)
    args = llama.ModelArgs(
        model_type="llama",
        rms_norm_eps=1e-5,
        rope_theta=1e5,
        tie_word_embeddings=True,
        **SHAPES[shape],
    )
    model = llama.Model(args)
    if bits < 32:
        nn.quantize(model, group_size=64, bits=bits)
    mx.eval(model.parameters())
    return model


def sequential(model: Any, prompt: list[int], seeds: list[int], tokens: int) -> list[list[int]]:
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    from persona_tui.backends.mlx.batched import keyed_sampler
    from persona_tui.values import SamplingParams

    sampling = SamplingParams(temperature=1.0, top_p=1.0, min_p=0.0, top_k=0)
    vocab = int(model.args.vocab_size)
    out = []
    for seed in seeds:
        steps = generate_step(
            mx.array(prompt),
            model,
            max_tokens=tokens,
            sampler=keyed_sampler(sampling, seed, vocab),
        )
        out.append([int(token) for token, _ in steps])
    return out


def batched(model: Any, prompt: list[int], seeds: list[int], tokens: int) -> list[list[int]]:
    from mlx_lm.generate import BatchGenerator

    from persona_tui.backends.mlx.batched import keyed_sampler
    from persona_tui.values import SamplingParams

    sampling = SamplingParams(temperature=1.0, top_p=1.0, min_p=0.0, top_k=0)
    vocab = int(model.args.vocab_size)
    n = len(seeds)
    generator: Any = BatchGenerator(
        model, max_tokens=tokens, completion_batch_size=n, prefill_batch_size=n
    )
    uids = generator.insert(
        [prompt] * n,
        [tokens] * n,
        samplers=[keyed_sampler(sampling, seed, vocab) for seed in seeds],
    )
    out: dict[int, list[int]] = {uid: [] for uid in uids}
    while responses := generator.next_generated():
        for response in responses:
            out[response.uid].append(int(response.token))
    generator.close()
    return [out[uid] for uid in uids]


def matmul_rates(repeat: int = 10) -> None:
    """How MLX's CPU kernels scale with rows: one 896 × 4864 projection, f32 and 4-bit."""
    import mlx.core as mx
    import mlx.nn as nn

    linear = nn.Linear(896, 4864, bias=False)
    quantized = nn.QuantizedLinear.from_linear(linear, 64, 4)
    mx.eval(linear.parameters(), quantized.parameters())
    for name, layer in (("f32", linear), ("4-bit", quantized)):
        for rows in (1, 8, 64):
            x = mx.random.normal((rows, 896))
            mx.eval(layer(x))
            started = time.perf_counter()
            for _ in range(repeat):
                mx.eval(layer(x))
            seconds = (time.perf_counter() - started) / repeat
            print(
                f"matmul {name:>5} 896x4864, {rows:>2} rows: {seconds * 1e3:7.2f} ms "
                f"({2 * rows * 896 * 4864 / seconds / 1e9:.2f} GFLOP/s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--bits", type=int, choices=(4, 8, 32), default=32)
    parser.add_argument("--samples", default="1,4,8")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--matmul", action="store_true", help="only time one projection")
    args = parser.parse_args()
    if args.matmul:
        matmul_rates()
        return

    import mlx.core as mx

    from persona_tui.backends.common import installed_version

    model = build(args.shape, args.bits)
    vocab = int(model.args.vocab_size)
    prompt = [int(t) for t in mx.random.randint(0, vocab, (args.prompt_tokens,)).tolist()]
    print(
        f"mlx {mx.__version__}, mlx-lm {installed_version('mlx-lm')}, device "
        f"{mx.default_device()}; shape {args.shape}, {args.bits}-bit, prompt "
        f"{args.prompt_tokens} tokens, {args.tokens} tokens per sequence, "
        f"{args.rounds} alternated rounds (medians)"
    )
    sequential(model, prompt, [0], 2)  # warm up (MLX compiles kernels on first use)
    batched(model, prompt, [0, 1], 2)
    for n in (int(s) for s in args.samples.split(",")):
        seeds = list(range(n))
        seq_rates, batch_rates = [], []
        same = True
        for _ in range(args.rounds):
            started = time.perf_counter()
            one = sequential(model, prompt, seeds, args.tokens)
            seq_rates.append(n * args.tokens / (time.perf_counter() - started))
            started = time.perf_counter()
            many = batched(model, prompt, seeds, args.tokens)
            batch_rates.append(n * args.tokens / (time.perf_counter() - started))
            same = same and one == many
        seq, bat = statistics.median(seq_rates), statistics.median(batch_rates)
        print(
            f"samples {n:>2}: sequential {seq:8.1f} tok/s  batched {bat:8.1f} tok/s  "
            f"ratio {bat / seq:4.2f}  same tokens: {'identical' if same else 'DIFFERENT'}",
            flush=True,
        )


if __name__ == "__main__":
    main()
