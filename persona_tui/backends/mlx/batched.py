"""Batched sampling on MLX: N sequences decoded together by mlx-lm's `BatchGenerator`.

What mlx-lm's batching gives and what this module adds (mlx-lm 0.32):

- **Per-sequence seeds.** `BatchGenerator.insert(samplers=[...])` takes one sampler per
  sequence, and calls each on its own row when they differ. mlx-lm's own samplers
  (`make_sampler`) draw from MLX's process-wide random state, so sequences would share one
  stream of draws and depend on each other's order; `keyed_sampler` draws from the
  sequence's own key instead, split once per draw exactly as `mx.random.seed(seed)` and the
  global key sequence are, so sequence i draws what `generate` seeded with its seed draws,
  and nothing that ran before changes it.
- **Stop strings.** mlx-lm stops on token sequences (a stop string can be spelled by other
  tokens, and it does not hold back a partial match); here each sequence has its own
  `StopStringStream`, and a sequence that ends is removed from the generator
  (`BatchGenerator.remove`), the others going on.
- **Streaming and cancel.** `next_generated()` returns one token of every live sequence per
  step; `cancel` is looked at before each sequence's token is used.

The prompt part the sequences share is evaluated once (in the backend's prompt cache, as
`generate` evaluates a prompt) and copied to each sequence. Numbers depend on the batch
shape, as in llama.cpp, so callers fix the composition (run/plan.batch_groups).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from persona_tui.backends.base import BatchDone, BatchEvent, BatchText, GenerationResult
from persona_tui.backends.common import common_prefix, is_cancelled, make_result
from persona_tui.backends.mlx.tokens import CompletionBytes
from persona_tui.backends.stream import StopStringStream
from persona_tui.values import FinishReason, SamplingParams


def keyed_sampler(sampling: SamplingParams, seed: int, n_vocab: int) -> Callable[[Any], Any]:
    """mlx-lm's `make_sampler` chain (top-p, min-p, top-k, then a draw at the temperature),
    drawing from its own key: `mx.random.key(seed)`, split once per draw."""
    import mlx.core as mx
    from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p, greedy_sampler

    if sampling.temperature <= 0:
        return greedy_sampler
    top_k = sampling.top_k if 0 < sampling.top_k < n_vocab else 0
    filters: list[Callable[[Any], Any]] = []
    if 0 < sampling.top_p < 1.0:
        filters.append(lambda x: apply_top_p(x, sampling.top_p))
    if sampling.min_p != 0.0:
        filters.append(lambda x: apply_min_p(x, sampling.min_p, 1))
    if top_k > 0:
        filters.append(lambda x: apply_top_k(x, top_k))
    state = [mx.random.key(seed)]
    inverse = 1.0 / sampling.temperature

    def draw(logprobs: Any) -> Any:
        for keep in filters:
            logprobs = keep(logprobs)
        state[0], key = mx.random.split(state[0])
        return mx.random.categorical(logprobs * inverse, key=key)

    return draw


def shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """The length of the prefix every prompt shares, short of every prompt's last token
    (each sequence evaluates at least its last token, whose logits it samples from)."""
    first = prompts[0]
    common = len(first) - 1
    for tokens in prompts[1:]:
        common = min(common, common_prefix(first, tokens), len(tokens) - 1)
    return max(common, 0)


@dataclass
class _Sequence:
    index: int
    stream: StopStringStream
    pieces: CompletionBytes
    prompt_tokens: int
    evaluated: int
    count: int = 0


@dataclass(frozen=True)
class BatchModel:
    """What `decode_batch` needs of the backend."""

    model: Any
    token_bytes: list[bytes] | None
    decode: Callable[[list[int]], str]
    is_end: Callable[[int], bool]
    n_vocab: int
    processors: Callable[[], list[Any]]  # a fresh list of logits processors per sequence


def decode_batch(
    engine: BatchModel,
    head_cache: list[Any],
    head: Sequence[int],
    rests: Sequence[Sequence[int]],
    sampling: SamplingParams,
    seeds: Sequence[int],
    stop: Sequence[str],
    cancel: threading.Event | None,
    started: float,
    evaluated: Sequence[int],
) -> Generator[BatchEvent, None, None]:
    """Decode sequence i from a copy of `head_cache` (holding `head`) and its own prompt
    rest `rests[i]` (at least one token), until each ends."""
    from mlx_lm.generate import BatchGenerator

    n = len(rests)
    live = {
        i: _Sequence(
            i,
            StopStringStream(stop),
            CompletionBytes(engine.token_bytes, engine.decode),
            len(head) + len(rest),
            evaluated[i],
        )
        for i, rest in enumerate(rests)
    }
    if sampling.max_tokens <= 0:
        for i in range(n):
            yield BatchDone(i, _result(live[i], "length", started))
        return
    generator: Any = BatchGenerator(
        engine.model,
        max_tokens=sampling.max_tokens,
        completion_batch_size=n,
        prefill_batch_size=n,
    )
    try:
        uids = generator.insert(
            [list(rest) for rest in rests],
            [sampling.max_tokens] * n,
            caches=[copy.deepcopy(head_cache) for _ in range(n)],
            all_tokens=[list(head) for _ in range(n)],
            samplers=[keyed_sampler(sampling, seed, engine.n_vocab) for seed in seeds],
            logits_processors=[engine.processors() for _ in range(n)],
        )
        index_of = {uid: i for i, uid in enumerate(uids)}
        while live:
            if is_cancelled(cancel):
                for i in sorted(live):
                    text, result = _finish(live.pop(i), "cancelled", started)
                    if text:
                        yield BatchText(i, text)
                    yield BatchDone(i, result)
                break
            responses = generator.next_generated()
            if not responses:  # cannot happen: every sequence ends at max_tokens here first
                raise RuntimeError("mlx-lm's batch generator ended before its sequences")
            ended: list[int] = []
            for response in responses:
                seq = live.get(index_of[response.uid])
                if seq is None:
                    continue
                finish, text = _take(engine, seq, int(response.token), sampling, cancel)
                if finish is not None:
                    rest, result = _finish(seq, finish, started)
                    text += rest
                if text:
                    yield BatchText(seq.index, text)
                if finish is not None:
                    del live[seq.index]
                    ended.append(response.uid)
                    yield BatchDone(seq.index, result)
            if ended:
                generator.remove(ended)
    finally:
        generator.close()


def _take(
    engine: BatchModel,
    seq: _Sequence,
    token: int,
    sampling: SamplingParams,
    cancel: threading.Event | None,
) -> tuple[FinishReason | None, str]:
    """Use a sequence's next token: the order of checks of `backends.common.stream_tokens`
    (cancel, end token (not counted), the token's text (a stop string ends it), max_tokens)."""
    if is_cancelled(cancel):
        return "cancelled", ""
    if engine.is_end(token):
        return "stop", ""
    seq.count += 1
    text = seq.stream.feed(seq.pieces.add(token))
    if seq.stream.stopped:
        return "stop", text
    if seq.count >= sampling.max_tokens:
        return "length", text
    return None, text


def _finish(seq: _Sequence, finish: FinishReason, started: float) -> tuple[str, GenerationResult]:
    """The text a sequence still holds back, and its result (as `generate` ends one)."""
    text = ""
    if not seq.stream.stopped:
        text += seq.stream.feed(seq.pieces.finish())
        finish = "stop" if seq.stream.stopped else finish
    text += seq.stream.finish()
    return text, _result(seq, finish, started)


def _result(seq: _Sequence, finish: FinishReason, started: float) -> GenerationResult:
    return make_result(
        seq.stream.text,
        finish,
        prompt_tokens=seq.prompt_tokens,
        completion_tokens=seq.count,
        evaluated=seq.evaluated,
        started=started,
    )
