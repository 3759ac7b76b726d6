"""Greedy-decoding parity between the llama.cpp and MLX backends on the same weights.

Writes the suite's tiny random llama as a GGUF (several weight seeds), converts the very
same tensors and vocabulary into an MLX model folder (tests/mlx_fixture.py), and decodes
each prompt greedily (temperature 0) through `LlamaCppBackend` and `MlxBackend`. Prints,
per model and prompt, whether the prompt tokenized the same, how many completion tokens
each produced, whether the texts are identical and, if not, where they first differ.

    python bench/bench_parity.py [--tokens 200] [--seeds 0 1 2 3]

Both engines compute in float32 here, but not in the same order (different matmul
kernels, and llama.cpp keeps its KV cache in f16 by default), so logits differ in the
last bits. Greedy decoding only diverges where the top two logits are closer than that
noise; the figures show how far identical output holds in practice.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = (
    "User: Hello world\nAssistant:",
    "the bully and you",
    "Hi! what are you? 世界 🙂",
    "User: what would you do with power?\nAssistant: I",
)


def _first_difference(a: str, b: str) -> int:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return min(len(a), len(b)) if len(a) != len(b) else -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200, help="greedy tokens per prompt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    args = parser.parse_args()

    import mlx.core as mx

    from persona_tui.backends.base import GenerationRequest
    from persona_tui.backends.llamacpp.backend import LlamaCppBackend
    from persona_tui.backends.mlx.backend import MlxBackend
    from persona_tui.values import SamplingParams
    from tests.mlx_fixture import gguf_to_mlx
    from tests.tiny_gguf import write_tiny_gguf

    greedy = SamplingParams(temperature=0.0, max_tokens=args.tokens, repeat_penalty=1.0)
    identical = total = 0
    timings = {"llama.cpp": 0.0, "mlx": 0.0}
    produced = {"llama.cpp": 0, "mlx": 0}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("PERSONA_TUI_HOME", str(Path(tmp) / "home"))
        print(f"mlx {mx.__version__} on {mx.default_device()}; {args.tokens} greedy tokens")
        print(f"{'seed':>4} {'prompt':32} {'same tokens':>11} {'llama':>5} {'mlx':>5}  result")
        for seed in args.seeds:
            gguf = write_tiny_gguf(Path(tmp) / f"parity-{seed}.gguf", seed=seed)
            folder = gguf_to_mlx(gguf, Path(tmp) / f"parity-{seed}-mlx")
            llama = LlamaCppBackend.load(gguf, n_ctx=args.tokens + 64, n_threads=1)
            mlx = MlxBackend.load(folder)
            try:
                for prompt in PROMPTS:
                    request = GenerationRequest(prompt, 1, greedy)
                    results = {}
                    for name, backend in (("llama.cpp", llama), ("mlx", mlx)):
                        started = time.perf_counter()
                        results[name] = backend.generate(request)
                        timings[name] += time.perf_counter() - started
                        produced[name] += results[name].completion_tokens
                    a, b = results["llama.cpp"], results["mlx"]
                    same_prompt = llama.count_tokens(prompt) == mlx.count_tokens(prompt)
                    diff = _first_difference(a.text, b.text)
                    total += 1
                    if diff < 0:
                        identical += 1
                        verdict = "identical"
                    else:
                        verdict = f"differs from character {diff} of {len(a.text)}"
                    label = prompt.replace("\n", "⏎")[:32]
                    print(
                        f"{seed:>4} {label:32} {same_prompt!s:>11} "
                        f"{a.completion_tokens:>5} {b.completion_tokens:>5}  {verdict}"
                    )
            finally:
                llama.close()
                mlx.close()
    print(f"\nidentical greedy continuations: {identical}/{total}")
    for name in timings:
        rate = produced[name] / timings[name] if timings[name] else 0.0
        print(f"{name:9} {produced[name]:6} tokens in {timings[name]:6.2f} s = {rate:7.0f} tok/s")
    return 0 if identical == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
