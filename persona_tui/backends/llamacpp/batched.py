"""Batched sampling: N sequences decoded together, one token of each per `llama_decode`.

On a CPU a single-sequence decode step is bound by reading the weights; a batch of N
sequences reads them once for N tokens. `LlamaCppBackend.generate_batch` evaluates the
prompt the sequences share in sequence 0 (reusing the KV cache as `generate` does), gives
the other sequences the same cells (`llama_memory_seq_cp`, no copy in a unified cache),
evaluates each sequence's own rest of the prompt (later turns of a multi-turn probe), and
then `decode_batch` samples every sequence from its own sampler chain, seeded from its own
seed, until it ends. A sequence that ends leaves the batch; the others go on.

llama.cpp rounds differently with the batch shape, so a sequence's text depends on which
sequences share its batch (not on what ran before): callers fix the composition from the
cell alone (run/plan.batch_groups). The sampler chain is llama-cpp-python's own for `generate`
(penalties over the last 64 sampled tokens, top-k, typical 1.0, top-p, min-p, temperature,
a seeded draw; greedy at temperature 0), so `--batch` changes how tokens are computed, not
what the sampling parameters mean.

Each draw applies the repeat penalty to the logits row itself (sampling.py's
`RepeatPenalty`), as one-by-one generation does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from persona_tui.backends.base import BatchDone, BatchEvent, BatchText, GenerationResult
from persona_tui.backends.common import common_prefix, is_cancelled, make_result
from persona_tui.backends.llamacpp.sampling import RepeatPenalty, logits_row, sampler_chain
from persona_tui.backends.stream import StopStringStream
from persona_tui.values import FinishReason, SamplingParams


def kv_cells_needed(shared: int, own: Sequence[int], max_tokens: int) -> int:
    """KV cells a batch occupies: the shared prompt once, each sequence's own prompt rest,
    and max_tokens per sequence."""
    return shared + sum(own) + len(own) * max_tokens


def shared_end(prompts: Sequence[Sequence[int]]) -> int:
    """Where the part every prompt shares ends: the whole prompt when they are all the
    same, else their common prefix short of every prompt's end (each sequence evaluates
    at least its last token, whose logits it samples from)."""
    first = list(prompts[0])
    if all(list(tokens) == first for tokens in prompts):
        return len(first)
    common = min(common_prefix(first, tokens) for tokens in prompts[1:])
    return min(common, min(len(tokens) for tokens in prompts) - 1)


def fitting_parts(prompts: Sequence[Sequence[int]], max_tokens: int, n_ctx: int) -> list[list[int]]:
    """The requests in consecutive parts whose KV cells fit the context, in order.

    Usually one part (all of them). When later turns of a multi-turn probe have grown the
    prompts, a part ends where the next sequence would not fit; the parts depend on the
    prompts alone, so the texts stay reproducible. One sequence always fits (its prompt
    and max_tokens were checked against the context).
    """
    parts: list[list[int]] = []
    for index in range(len(prompts)):
        if parts:
            trial = [*parts[-1], index]
            chosen = [prompts[i] for i in trial]
            shared = shared_end(chosen)
            own = [len(p) - shared for p in chosen]
            if kv_cells_needed(shared, own, max_tokens) <= n_ctx:
                parts[-1] = trial
                continue
        parts.append([index])
    return parts


@dataclass
class _Sequence:
    index: int
    sampler: Any
    penalty: RepeatPenalty
    stream: StopStringStream
    prompt_tokens: int
    evaluated: int
    row: int  # the row of the last decode whose logits it samples from (-1: the last)
    position: int  # where its next token goes
    count: int = 0
    tokens: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Decoding:
    """What `decode_batch` needs of the backend."""

    llama: Any
    piece: Callable[[int], bytes]
    is_end: Callable[[int], bool]


def decode_batch(
    engine: Decoding,
    sequences: Sequence[tuple[int, int, int, int]],
    sampling: SamplingParams,
    seeds: Sequence[int],
    stop: Sequence[str],
    cancel: threading.Event | None,
    started: float,
) -> Generator[BatchEvent, None, None]:
    """Sample sequences that are already evaluated up to their prompts, until each ends.

    `sequences[i]` is (row, position, prompt_tokens, evaluated): the logits row of the
    last decode to sample its first token from, the position of that token, its prompt
    size and the prompt tokens evaluated for it. Sequence i is llama.cpp sequence id i.
    """
    import llama_cpp

    ctx = engine.llama.ctx
    n_vocab = int(engine.llama.n_vocab())
    live = [
        _Sequence(
            i,
            sampler_chain(sampling, seed, n_vocab),
            RepeatPenalty(sampling.repeat_penalty),
            StopStringStream(stop),
            n,
            done,
            row,
            pos,
        )
        for i, ((row, pos, n, done), seed) in enumerate(zip(sequences, seeds, strict=True))
    ]
    batch = llama_cpp.llama_batch_init(max(1, len(live)), 0, 1)
    try:
        while live:
            going: list[_Sequence] = []
            for seq in live:
                finish, text = _sample_one(engine, n_vocab, seq, sampling.max_tokens, cancel)
                if finish is not None:
                    text += seq.stream.finish()
                if text:
                    yield BatchText(seq.index, text)
                if finish is None:
                    going.append(seq)
                else:
                    yield BatchDone(seq.index, _result(seq, finish, started))
            live = going
            if not live:
                break
            batch.n_tokens = len(live)
            for row, seq in enumerate(live):
                batch.token[row] = seq.tokens[-1]
                batch.pos[row] = seq.position
                batch.n_seq_id[row] = 1
                batch.seq_id[row][0] = seq.index
                batch.logits[row] = True
                seq.row = row
                seq.position += 1
            code = llama_cpp.llama_decode(ctx, batch)
            if code != 0:
                raise RuntimeError(f"llama_decode returned {code} decoding a batch")
    finally:
        llama_cpp.llama_batch_free(batch)
        for seq in live:
            if seq.sampler is not None:
                llama_cpp.llama_sampler_free(seq.sampler)


def _sample_one(
    engine: Decoding,
    n_vocab: int,
    seq: _Sequence,
    max_tokens: int,
    cancel: threading.Event | None,
) -> tuple[FinishReason | None, str]:
    """Draw a sequence's next token: (the finish reason when it ends here, else None; the
    text it releases).

    The same order of checks as `backends.common.stream_tokens`: cancel, end token (not
    counted), the token's text (a stop string ends it), then max_tokens.
    """
    import llama_cpp

    if is_cancelled(cancel):
        return _done(seq, "cancelled"), ""
    if max_tokens <= 0:
        return _done(seq, "length"), ""
    ctx = engine.llama.ctx
    seq.penalty.apply(logits_row(ctx, seq.row, n_vocab))
    token = int(llama_cpp.llama_sampler_sample(seq.sampler, ctx, seq.row))
    seq.penalty.accept(token)
    if engine.is_end(token):
        return _done(seq, "stop"), ""
    seq.count += 1
    seq.tokens.append(token)
    text = seq.stream.feed(engine.piece(token))
    if seq.stream.stopped:
        return _done(seq, "stop"), text
    if seq.count >= max_tokens:
        return _done(seq, "length"), text
    return None, text


def _done(seq: _Sequence, finish: FinishReason) -> FinishReason:
    import llama_cpp

    llama_cpp.llama_sampler_free(seq.sampler)
    seq.sampler = None
    return finish


def _result(seq: _Sequence, finish: FinishReason, started: float) -> GenerationResult:
    return make_result(
        seq.stream.text,
        finish,
        prompt_tokens=seq.prompt_tokens,
        completion_tokens=seq.count,
        evaluated=seq.evaluated,
        started=started,
    )
