"""Where the output projection is cheapest, and whether a faster path stays exact.

A probe option's token needs one row of the output projection (262,144 × 640 on the demo
model, its Q8_0 `token_embd` tied as the output). This bench decodes `--rows` tokens of
one sequence after a prompt on the demo model and compares, per row:

- llama.cpp's decode with logits at every row, on a plain context and on one with the
  eval callback installed (which the hidden states need);
- llama.cpp's own projection: the decode with logits at every row minus the decode
  stopped just before the projection (llama.cpp's eval callback returns false after the
  final norm's output `result_norm`, which ends the graph there);
- a GEMM of those hidden states (read in the same callback) by the dequantized output
  matrix with torch: float32, and bfloat16 (what AVX512-BF16 and AMX multiply fast;
  torch's CPU bf16 matmul also rounds its output to bf16);
- the log-sum-exp of a row (float32 with a float64 sum, as the scorer takes it).

Then each GEMM's worst error in nats per token against llama.cpp's own logits of the same
rows: as it is, and with the hidden states first quantized to Q8_0 as llama.cpp quantizes
them for a Q8_0 weight. The tolerance a faster path must keep is 1e-2 nats per token.

Needs torch and gguf (`pip install -e '.[train]'`). Reads `ggml_tensor` fields through
ctypes at the offsets of the llama.cpp this package was built with (checked: the tensor's
name and shape must match, else the bench stops).

    python bench/bench_projection.py [--rows 200] [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time
from pathlib import Path
from typing import Any

from bench_machine import machine_summary

from persona_tui.backends.llamacpp.load import (
    _import_llama_cpp,
    _llama_class,
    choose_repack,
    system_info,
)
from persona_tui.models.discovery import demo_model_path

TEXT = "The following is a transcript of a school play rehearsal. Max mocks the new pupil. "


class Tensor(ctypes.Structure):
    """The leading fields of ggml's `struct ggml_tensor` (ggml.h), up to its name."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * 10),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
    ]


def plain_decode(path: Path, tokens: list[int], rows: int, threads: int, repeat: int) -> float:
    """Median seconds of the same decode on a context without an eval callback."""
    import llama_cpp

    from persona_tui.backends.llamacpp.load import plain_llama

    llm = plain_llama(path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    times = []
    try:
        for _ in range(repeat):
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
            batch = llama_cpp.llama_batch_init(len(tokens), 0, 1)
            batch.n_tokens = len(tokens)
            for i, token in enumerate(tokens):
                batch.token[i], batch.pos[i] = token, i
                batch.n_seq_id[i], batch.seq_id[i][0] = 1, 0
                batch.logits[i] = i >= len(tokens) - rows
            clock = time.perf_counter()
            assert llama_cpp.llama_decode(llm.ctx, batch) == 0
            times.append(time.perf_counter() - clock)
            llama_cpp.llama_batch_free(batch)
    finally:
        llm.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: the demo model)")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import gguf
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    llama_cpp = _import_llama_cpp()
    state: dict[str, Any] = {"stop": False, "hidden": None}

    def callback(pointer: int, ask: bool, _data: int) -> bool:
        if not state["stop"]:
            return False
        tensor = ctypes.cast(pointer, ctypes.POINTER(Tensor)).contents
        if ask:
            return bool(tensor.name == b"result_norm")
        ne = tuple(tensor.ne)
        data = ctypes.cast(tensor.data, ctypes.POINTER(ctypes.c_float))
        state["hidden"] = np.ctypeslib.as_array(data, shape=(ne[1], ne[0])).copy()
        return False  # stop the graph here: the projection is not computed

    hook = llama_cpp.ggml_backend_sched_eval_callback(callback)
    base = _llama_class(llama_cpp)

    class Hooked(base):  # type: ignore[misc, valid-type]
        @property
        def context_params(self) -> Any:
            return self.__dict__["_params"]

        @context_params.setter
        def context_params(self, params: Any) -> None:
            params.cb_eval = hook
            self.__dict__["_params"] = params

    path = args.model or demo_model_path()
    repack = choose_repack("auto", system_info()).enabled
    llm = Hooked(
        model_path=str(path),
        n_ctx=2048,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        use_extra_bufts=repack,
        verbose=False,
    )
    ctx = llm.ctx
    tokens = llm.tokenize((TEXT * 40).encode(), add_bos=True)[: args.rows + 16]
    n = len(tokens)

    def decode(stop: bool) -> float:
        state["stop"] = stop
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        batch = llama_cpp.llama_batch_init(n, 0, 1)
        batch.n_tokens = n
        for i, token in enumerate(tokens):
            batch.token[i], batch.pos[i] = token, i
            batch.n_seq_id[i], batch.seq_id[i][0] = 1, 0
            batch.logits[i] = i >= n - args.rows
        clock = time.perf_counter()
        assert llama_cpp.llama_decode(ctx, batch) == 0
        seconds = time.perf_counter() - clock
        llama_cpp.llama_batch_free(batch)
        state["stop"] = False
        return seconds

    full = statistics.median(decode(False) for _ in range(args.repeat))
    plain = plain_decode(path, tokens, args.rows, args.threads, args.repeat)
    vocab = int(llm.n_vocab())
    logits = np.array(
        [
            np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i), shape=(vocab,))
            for i in range(n - args.rows, n)
        ]
    )
    body = statistics.median(decode(True) for _ in range(args.repeat))
    hidden = torch.from_numpy(state["hidden"])
    assert hidden.shape == (args.rows, int(llm.n_embd())), hidden.shape

    reader = gguf.GGUFReader(str(path))
    output = next(t for t in reader.tensors if t.name in ("output.weight", "token_embd.weight"))
    weight = torch.from_numpy(gguf.quants.dequantize(output.data, output.tensor_type))
    assert weight.shape == (vocab, hidden.shape[1]), weight.shape

    def timed(h: Any, w: Any) -> tuple[float, Any]:
        h @ w.T  # warm up
        clock = time.perf_counter()
        for _ in range(args.repeat):
            out = h @ w.T
        return (time.perf_counter() - clock) / args.repeat, out.float()

    fp32_seconds, fp32 = timed(hidden, weight)
    bf16_seconds, bf16 = timed(hidden.bfloat16(), weight.bfloat16())
    clock = time.perf_counter()
    for row in logits:
        top = float(row.max())
        float(np.exp(row - np.float32(top)).sum(dtype=np.float64))
    lse_seconds = time.perf_counter() - clock

    targets = torch.tensor([*tokens[n - args.rows + 1 :], tokens[0]])

    def logprobs(values: Any) -> Any:
        values = torch.as_tensor(values, dtype=torch.float64)
        picked = values.gather(1, targets[:, None])[:, 0]
        return (picked - torch.logsumexp(values, 1)).numpy()

    def q8_0(h: Any) -> Any:
        blocks = h.reshape(h.shape[0], -1, 32)
        scale = blocks.abs().amax(-1, keepdim=True) / 127
        inverse = torch.where(scale > 0, 1 / scale, torch.zeros_like(scale))
        quantized = (blocks * inverse).round().clamp(-127, 127)
        return (quantized * scale.half().float()).reshape(h.shape)

    reference = logprobs(logits)
    q8 = q8_0(hidden)
    errors = {
        "float32 GEMM": logprobs(fp32),
        "float32 GEMM, Q8_0 hidden": logprobs(q8 @ weight.T),
        "bfloat16 GEMM": logprobs(bf16),
        "bfloat16 GEMM, Q8_0 hidden": logprobs((q8.bfloat16() @ weight.bfloat16().T).float()),
    }
    per_row = 1e3 / args.rows
    print(machine_summary())
    print(f"{path.name}, {args.threads} threads, {args.rows} rows after {n - args.rows} tokens")
    print(f"llama.cpp decode with logits, no eval callback: {plain * per_row:6.2f} ms/row")
    print(f"llama.cpp decode with logits:      {full * per_row:6.2f} ms/row")
    print(f"llama.cpp decode without the projection: {body * per_row:6.2f} ms/row")
    print(f"llama.cpp projection:              {(full - body) * per_row:6.2f} ms/row")
    print(f"torch float32 GEMM:                {fp32_seconds * per_row:6.2f} ms/row")
    print(f"torch bfloat16 GEMM:               {bf16_seconds * per_row:6.2f} ms/row")
    print(f"log-sum-exp (float32, float64 sum): {lse_seconds * per_row:6.2f} ms/row")
    for name, values in errors.items():
        error = np.abs(values - reference)
        print(f"{name:28s} worst {error.max():.4f}, mean {error.mean():.5f} nats per token")


if __name__ == "__main__":
    main()
