"""`generate_batch` of the llama.cpp backend: the shared prompt once, then the group.

A mixin of `LlamaCppBackend` (backend.py), which holds the model, its lock and its prompt
cache: this part evaluates the part of the prompts all requests share in sequence 0,
along the batch plan `generate` uses (so it reuses the KV cache exactly as `generate`
does), then hands the group to batched.py's `decode_group`; the shared part stays cached
for the next call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Sequence
from typing import Any

from persona_tui.backends.base import BatchEvent, GenerationRequest
from persona_tui.backends.common import cancelled_batch, check_batch, is_cancelled
from persona_tui.backends.llamacpp.batched import (
    Decoding,
    GroupPlan,
    decode_group,
    group_batch,
    shared_end,
)
from persona_tui.backends.llamacpp.batching import batch_ends, reusable_prefix
from persona_tui.backends.llamacpp.load import MAX_SEQUENCES
from persona_tui.backends.llamacpp.logprobs import ScoredPrompt
from persona_tui.backends.local import LocalBackend, engine_failures

# Prompt tokens are evaluated in batches of at most this many positions, planned so that
# reusing the KV cache never changes a result: see persona_tui/backends/llamacpp/batching.py.
EVAL_BLOCK = 128


class LlamaBatchRunner(LocalBackend):
    """The batched half of the llama.cpp backend (see the module docstring)."""

    _llama: Any
    _scored: ScoredPrompt
    _cached_tokens: list[int]
    _cached_ends: tuple[int, ...]
    _plan: tuple[int, ...]

    def _piece(self, token: int) -> bytes:
        raise NotImplementedError

    def _is_end(self, token: int) -> bool:
        raise NotImplementedError

    def _framing_tokens(self, request: GenerationRequest, tokens: Sequence[int]) -> int:
        raise NotImplementedError

    def _govern_threads(self) -> None:
        raise NotImplementedError

    @property
    def max_batch(self) -> int:
        """MAX_SEQUENCES, or fewer in a context too small for them (see load.py)."""
        return max(1, int(self._llama.context_params.n_seq_max) - 2)

    def generate_batch(
        self,
        requests: Sequence[GenerationRequest],
        cancel: threading.Event | None = None,
        batch: int | None = None,
    ) -> Generator[BatchEvent, None, None]:
        """Decode one sequence per request, `batch` at a time (see
        backends.base.BatchedGeneration and batched.py's `decode_group`).

        The part of the prompts all requests share is evaluated once, in sequence 0 and
        along the batch plan `generate` uses (so it reuses the KV cache exactly as
        `generate` does, up to a batch end of that plan); afterwards it stays cached for
        the next call.
        """
        requests = list(requests)
        if not requests:
            return
        first = requests[0]
        batch = len(requests) if batch is None else batch
        check_batch(
            requests,
            batch,
            MAX_SEQUENCES,
            f"a batch decodes 1 to {MAX_SEQUENCES} sequences at once",
        )
        with self._lock:
            self._check_open()
            self._govern_threads()
            self._scored.tokens = []  # the KV cache is about to change (see logprob_scope)
            started = time.perf_counter()
            prompts = self._prompt_tokens([r.prompt for r in requests], first.sampling.max_tokens)
            if is_cancelled(cancel):
                yield from cancelled_batch(prompts, started)
                return
            split = self._framing_tokens(first, prompts[0])
            with engine_failures(
                lambda exc: f"llama.cpp failed while generating: {exc}", self._after_batch_failure
            ):
                yield from self._batch_locked(requests, prompts, split, batch, cancel)

    def _after_batch_failure(self) -> None:
        self._llama.reset()
        self._cached_tokens, self._cached_ends = [], ()

    def _batch_locked(
        self,
        requests: list[GenerationRequest],
        prompts: list[list[int]],
        split: int,
        batch: int,
        cancel: threading.Event | None,
    ) -> Generator[BatchEvent, None, None]:
        """Evaluate the shared part of the prompts in sequence 0, then decode the group."""
        import llama_cpp

        started = time.perf_counter()
        ends = batch_ends(len(prompts[0]), EVAL_BLOCK, split)
        shared = shared_end(prompts)
        sampling = requests[0].sampling
        batch, hold = group_batch(prompts, shared, batch, sampling.max_tokens, self._n_ctx)
        llama = self._llama
        memory = llama_cpp.llama_get_memory(llama.ctx)
        head = prompts[0][:shared]
        cached = min(int(llama.n_tokens), len(self._cached_tokens))
        keep = min(
            reusable_prefix(self._cached_tokens[:cached], self._cached_ends, prompts[0], ends),
            shared,
        )
        self._cached_tokens, self._cached_ends = [], ()  # until the batch is cleaned up
        try:
            llama.n_tokens = keep
            self._plan = ends
            try:
                llama.eval(head[keep:])  # removes every cell from `keep` on, then evaluates
            finally:
                self._plan = ()
            engine = Decoding(llama, self._piece, self._is_end)
            seeds = [r.seed for r in requests]
            plan = GroupPlan(prompts, seeds, shared, batch, hold, sampling, requests[0].stop)
            yield from decode_group(engine, plan, cancel, started, shared - keep)
        finally:
            # Keep the shared prompt in sequence 0 for the next call; the group dropped
            # its own sequences.
            llama_cpp.llama_memory_seq_rm(memory, 0, shared, -1)
            llama.n_tokens = shared
            self._cached_tokens = head
            self._cached_ends = tuple(end for end in ends if end <= shared)
