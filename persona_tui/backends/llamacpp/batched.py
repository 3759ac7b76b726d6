"""Batched sampling: N sequences decoded together, one token of each per `llama_decode`.

On a CPU a single-sequence decode step is bound by reading the weights; a batch of N
sequences reads them once for N tokens. `LlamaCppBackend.generate_batch` evaluates the
prompt the requests share in sequence 0 (reusing the KV cache as `generate` does); then
`decode_group` decodes up to `batch` of them at once, each in its own sequence: it gets
the shared cells (`llama_memory_seq_cp`, no copy in a unified cache), evaluates its own
rest of the prompt (a probe's text, later turns of a multi-turn probe) or copies it from
the request before with the same prompt, and samples from its own sampler chain, seeded
from its own seed, until it ends. A sequence that ends leaves the batch and the next
request waiting takes its place, so the batch stays full while requests wait.

llama.cpp rounds differently with the batch shape, so a sequence's text depends on which
sequences share its steps (not on what ran before): callers fix the requests and batch
from the plan alone (run/plan.batch_groups). The sampler chain is llama-cpp-python's own
for `generate` (penalties over the last 64 sampled tokens, top-k, typical 1.0, top-p,
min-p, temperature, a seeded draw; greedy at temperature 0), so `--batch` changes how
tokens are computed, not what the sampling parameters mean.

Each draw applies the repeat penalty to the logits row itself (sampling.py's
`RepeatPenalty`), as one-by-one generation does.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from persona_tui.backends.base import (
    BatchDone,
    BatchEvent,
    BatchStarted,
    BatchText,
    GenerationResult,
)
from persona_tui.backends.common import (
    cancelled_before_start,
    common_prefix,
    is_cancelled,
    make_result,
)
from persona_tui.backends.llamacpp.sampling import RepeatPenalty, logits_row, sampler_chain
from persona_tui.backends.stream import StopStringStream
from persona_tui.values import FinishReason, SamplingParams


def shared_end(prompts: Sequence[Sequence[int]]) -> int:
    """Where the part every prompt shares ends: the whole prompt when they are all the
    same, else their common prefix short of every prompt's end (each sequence evaluates
    at least its last token, whose logits it samples from)."""
    first = list(prompts[0])
    if all(list(tokens) == first for tokens in prompts):
        return len(first)
    common = min(common_prefix(first, tokens) for tokens in prompts[1:])
    return min(common, min(len(tokens) for tokens in prompts) - 1)


def group_batch(
    prompts: Sequence[Sequence[int]], shared: int, batch: int, max_tokens: int, n_ctx: int
) -> tuple[int, bool]:
    """(how many sequences to decode at once, whether a holder may keep a prompt's rest).

    `batch`, or fewer when that many would not fit the context: the shared prompt once,
    and per sequence its own rest of the prompt and max_tokens (a sequence's cells are
    freed when another takes its place); the holder needs one more rest. A function of
    the prompts alone, so the texts stay reproducible. One sequence always fits (its
    prompt and max_tokens were checked against the context).
    """
    rest = max(len(tokens) - shared for tokens in prompts) + 1
    per_sequence = rest + max_tokens
    batch = max(1, min(batch, len(prompts), (n_ctx - shared) // per_sequence))
    return batch, shared + rest + batch * per_sequence <= n_ctx


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
    started: float  # perf_counter when it took its slot (the group's start for the first)
    count: int = 0
    tokens: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Decoding:
    """What `decode_group` needs of the backend."""

    llama: Any
    piece: Callable[[int], bytes]
    is_end: Callable[[int], bool]


@dataclass
class _Rows:
    """A llama_batch being filled: (token, position, sequence ids, logits) rows."""

    rows: list[tuple[int, int, tuple[int, ...], bool]] = field(default_factory=list)

    def add(self, token: int, position: int, seq_ids: Sequence[int], logits: bool) -> int:
        self.rows.append((token, position, tuple(seq_ids), logits))
        return len(self.rows) - 1


def _decode(llama_cpp: Any, ctx: Any, batch: Any, rows: Sequence[Any], what: str) -> None:
    batch.n_tokens = len(rows)
    for row, (token, position, seq_ids, logits) in enumerate(rows):
        batch.token[row] = token
        batch.pos[row] = position
        batch.n_seq_id[row] = len(seq_ids)
        for k, seq_id in enumerate(seq_ids):
            batch.seq_id[row][k] = seq_id
        batch.logits[row] = logits
    code = llama_cpp.llama_decode(ctx, batch)
    if code == 1:
        raise RuntimeError(f"no room left in the KV cache {what} (llama_decode returned 1)")
    if code != 0:
        raise RuntimeError(f"llama_decode returned {code} {what}")


@dataclass(frozen=True)
class GroupPlan:
    """What `decode_group` decodes: one sequence per prompt (each with its seed), `batch` at
    a time, after the `shared` tokens every prompt starts with (in sequence 0); `hold`:
    whether the context has room for the holder (`group_batch`)."""

    prompts: Sequence[Sequence[int]]
    seeds: Sequence[int]
    shared: int
    batch: int
    hold: bool
    sampling: SamplingParams
    stop: Sequence[str]


class _Group:
    """The KV cache and samplers of a group being decoded (see `decode_group`)."""

    def __init__(self, engine: Decoding, plan: GroupPlan, started: float) -> None:
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.engine = engine
        self.ctx = engine.llama.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_vocab = int(engine.llama.n_vocab())
        self.n_batch = max(1, int(engine.llama.n_batch))
        self.prompts = [list(tokens) for tokens in plan.prompts]
        self.shared = plan.shared
        self.batch = batch = plan.batch
        self.holder = batch + 1 if plan.hold else 0  # 0: no holder
        self.held: list[int] | None = None  # the prompt whose rest the holder keeps
        self.sampling = plan.sampling
        self.seeds = plan.seeds
        self.stop = plan.stop
        self.started = started
        self.live: dict[int, _Sequence] = {}  # slot (llama.cpp sequence id) -> sequence
        self.used: set[int] = set()  # slots whose cells are still in the cache
        self.llama_batch = llama_cpp.llama_batch_init(max(self.n_batch, batch), 0, batch + 1)

    def close(self) -> None:
        llama_cpp = self.llama_cpp
        llama_cpp.llama_batch_free(self.llama_batch)
        for seq in self.live.values():
            if seq.sampler is not None:
                llama_cpp.llama_sampler_free(seq.sampler)
        self.live.clear()
        for slot in [*self.used, *([self.holder] if self.held is not None else [])]:
            llama_cpp.llama_memory_seq_rm(self.memory, slot, -1, -1)

    def start(
        self,
        new: Sequence[tuple[int, int]],
        next_prompt: list[int] | None,
        first: bool,
        evaluated_shared: int,
    ) -> None:
        """Give each (slot, request) its prompt in the cache, and evaluate, in one decode
        with the next token of every live sequence, the last prompt token of each new one.

        The first evaluation of a prompt's own rest (after the shared part) also fills the
        holder when `next_prompt`, the next request waiting, has the same prompt: it then
        copies the cells instead of evaluating them again.
        """
        llama_cpp, memory, shared = self.llama_cpp, self.memory, self.shared
        for slot, _ in new:
            if slot in self.used:
                llama_cpp.llama_memory_seq_rm(memory, slot, -1, -1)
            self.used.add(slot)
        by_prompt: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for slot, index in new:
            by_prompt.setdefault(tuple(self.prompts[index]), []).append((slot, index))
        now = self.started if first else time.perf_counter()
        sequences = {slot: self._sequence(index, now) for slot, index in new}
        self.live.update(sequences)  # from here on, close() frees their samplers
        if first and all(len(tokens) == shared for tokens in by_prompt):
            # Every prompt is the shared one just evaluated: sample from its last row.
            for slot, _ in new:
                llama_cpp.llama_memory_seq_cp(memory, 0, slot, -1, -1)
            self._account(sequences, new, 0, evaluated_shared)
            return
        before = _Rows()
        for key, members in by_prompt.items():
            tokens = list(key)
            start = min(shared, len(tokens) - 1)
            slots = [slot for slot, _ in members]
            for slot in slots:
                llama_cpp.llama_memory_seq_cp(memory, 0, slot, 0, start)
            if self.held == tokens:
                for slot in slots:
                    llama_cpp.llama_memory_seq_cp(memory, self.holder, slot, start, len(tokens) - 1)
                continue
            owners = list(slots)
            if self.holder and next_prompt == tokens and start < len(tokens) - 1:
                if self.held is not None:
                    llama_cpp.llama_memory_seq_rm(memory, self.holder, -1, -1)
                self.held = tokens
                owners.append(self.holder)
                # llama.cpp wants a sequence's positions to go on from its last one.
                llama_cpp.llama_memory_seq_cp(memory, 0, self.holder, 0, start)
            sequences[slots[0]].evaluated += len(tokens) - 1 - start
            for position in range(start, len(tokens) - 1):
                before.add(tokens[position], position, owners, False)
        if self.held is not None and next_prompt != self.held:
            llama_cpp.llama_memory_seq_rm(memory, self.holder, -1, -1)
            self.held = None
        for begin in range(0, len(before.rows), self.n_batch):
            chunk = before.rows[begin : begin + self.n_batch]
            _decode(llama_cpp, self.ctx, self.llama_batch, chunk, "evaluating prompts")
        self._account(sequences, new, 1, evaluated_shared if first else 0)
        self.step(new_slots={slot for slot, _ in new})

    def step(self, new_slots: set[int] | None = None) -> None:
        """Decode one row per live sequence: its last prompt token (a new one) or its
        last sampled token; each then samples from its row."""
        final = _Rows()
        for slot in sorted(self.live):
            seq = self.live[slot]
            if new_slots and slot in new_slots:
                tokens = self.prompts[seq.index]
                seq.row = final.add(tokens[-1], len(tokens) - 1, (slot,), True)
            else:
                seq.row = final.add(seq.tokens[-1], seq.position, (slot,), True)
                seq.position += 1
        if final.rows:
            _decode(self.llama_cpp, self.ctx, self.llama_batch, final.rows, "decoding a batch")

    def _sequence(self, index: int, started: float) -> _Sequence:
        tokens = self.prompts[index]
        return _Sequence(
            index,
            sampler_chain(self.sampling, self.seeds[index], self.n_vocab),
            RepeatPenalty(self.sampling.repeat_penalty),
            StopStringStream(self.stop),
            len(tokens),
            0,
            -1,
            len(tokens),
            started,
        )

    @staticmethod
    def _account(
        sequences: dict[int, _Sequence], new: Sequence[tuple[int, int]], last: int, shared: int
    ) -> None:
        """Count `last` (1: each new sequence evaluates its last prompt token) and the
        shared part for the group's first sequence; the rests were counted as planned."""
        for seq in sequences.values():
            seq.evaluated += last
        sequences[new[0][0]].evaluated += shared


def decode_group(
    engine: Decoding,
    plan: GroupPlan,
    cancel: threading.Event | None,
    started: float,
    evaluated_shared: int,
) -> Generator[BatchEvent, None, None]:
    """Sample one sequence per prompt, at most `batch` at a time, until each ends.

    Llama.cpp sequence 0 holds the prompts' shared part (`shared` tokens), evaluated just
    before (its last logits are the last row when every prompt is exactly that part).
    Sequences 1..batch are the slots: the requests take them in order, and as one ends
    the next request waiting takes its slot (its cells are dropped then), so the batch
    stays full while requests wait. Each new sequence copies the shared cells, evaluates
    the rest of its prompt (or copies it from the holder, sequence batch + 1, when the
    request before had the same prompt) and its last prompt token joins the next step.
    Everything here depends on the prompts, seeds and batch alone, so the same group
    gives the same texts whatever ran before.
    """
    group = _Group(engine, plan, started)
    prompts, batch, max_tokens = plan.prompts, plan.batch, plan.sampling.max_tokens
    waiting = deque(range(len(prompts)))
    first = True
    try:
        while True:
            new: list[tuple[int, int]] = []
            if is_cancelled(cancel):
                while waiting:
                    index = waiting.popleft()
                    result = cancelled_before_start(started, prompt_tokens=len(prompts[index]))
                    yield BatchDone(index, result)
            else:
                free = [slot for slot in range(1, batch + 1) if slot not in group.live]
                while waiting and len(new) < len(free):
                    index = waiting.popleft()
                    new.append((free[len(new)], index))
                    yield BatchStarted(index)
            if not group.live and not new:
                break
            if new:
                upcoming = group.prompts[waiting[0]] if waiting else None
                group.start(new, upcoming, first, evaluated_shared)
                first = False
            elif not is_cancelled(cancel):  # cancelled: the draws end them, no step
                group.step()
            for slot in sorted(group.live):
                seq = group.live[slot]
                finish, text = _sample_one(engine, group.n_vocab, seq, max_tokens, cancel)
                if finish is not None:
                    text += seq.stream.finish()
                if text:
                    yield BatchText(seq.index, text)
                if finish is not None:
                    del group.live[slot]
                    yield BatchDone(seq.index, _result(seq, finish, seq.started))
    finally:
        group.close()


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
