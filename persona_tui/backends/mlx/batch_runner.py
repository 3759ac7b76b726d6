"""`generate_batch` of the MLX backend: consecutive batches, each one's shared prompt once.

A mixin of `MlxBackend` (backend.py), which holds the model, the MLX lock and the prompt
cache: the part of a batch's prompts they all share is evaluated once, in the prompt cache
`generate` uses (reusing what it holds), and stays cached for the next call; the batch is
then decoded by backends/mlx/batched.py.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import Any

from persona_tui.backends.base import BatchEvent, BatchStarted, GenerationRequest
from persona_tui.backends.common import cancelled_batch, check_batch, is_cancelled
from persona_tui.backends.local import LocalBackend, engine_failures
from persona_tui.backends.mlx.batched import BatchModel, decode_batch, shared_prefix
from persona_tui.backends.mlx.prompt_cache import MlxPromptCache
from persona_tui.backends.mlx.sampling import mlx_sampling

# mlx-lm's generate_step prefills a prompt in chunks of this many tokens.
PREFILL_STEP = 2048
# The exceptions MLX raises when a computation fails.
MLX_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, ValueError, OSError, MemoryError)


class MlxBatchRunner(LocalBackend):
    """The batched half of the MLX backend (see the module docstring)."""

    _mx: Any
    _model: Any
    _prompts: MlxPromptCache
    _byte_table: list[bytes] | None
    _end_ids: frozenset[int]
    _vocab_size: int
    _max_batch: int

    def _decode_completion(self, ids: list[int]) -> str:
        raise NotImplementedError

    @property
    def max_batch(self) -> int:
        """The most sequences one `generate_batch` call takes (see `default_max_batch`)."""
        return self._max_batch

    def generate_batch(
        self,
        requests: Sequence[GenerationRequest],
        cancel: threading.Event | None = None,
        batch: int | None = None,
    ) -> Generator[BatchEvent, None, None]:
        """Decode one sequence per request, in consecutive batches of `batch` (None: all
        together; see backends.base.BatchedGeneration and backends/mlx/batched.py).

        The part of each batch's prompts they all share is evaluated once, in the prompt
        cache `generate` uses (reusing what it holds), and stays cached for the next call.
        A batch is not refilled as its sequences end, as llama.cpp's is: mlx-lm's batch
        generator would take new prompts, but each would then be evaluated on its own.
        """
        requests = list(requests)
        if not requests:
            return
        batch = len(requests) if batch is None else batch
        check_batch(
            requests,
            batch,
            self._max_batch,
            f"this MLX backend decodes at most {self._max_batch} sequences together",
        )
        for begin in range(0, len(requests), batch):
            events = self._one_batch(requests[begin : begin + batch], cancel)
            with contextlib.closing(events):
                for event in events:
                    yield replace(event, index=event.index + begin)

    def _one_batch(
        self, requests: list[GenerationRequest], cancel: threading.Event | None
    ) -> Generator[BatchEvent, None, None]:
        """Decode one sequence per request together."""
        first = requests[0]
        with self._lock:
            self._check_open()
            started = time.perf_counter()
            prompts = self._prompt_tokens([r.prompt for r in requests], first.sampling.max_tokens)
            if is_cancelled(cancel):
                yield from cancelled_batch(prompts, started)
                return
            for index in range(len(requests)):
                yield BatchStarted(index)
            try:
                with engine_failures(
                    lambda error: (
                        f"MLX failed while generating a batch with {self._model_name}: {error}"
                    ),
                    self._prompts.drop,
                    MLX_ERRORS,
                ):
                    yield from self._batch_locked(requests, prompts, cancel, started)
            except GeneratorExit:
                raise  # closed early: the cache holds the head, untouched by the batch
            except BaseException:
                self._prompts.drop()  # e.g. KeyboardInterrupt mid-prefill
                raise

    def _batch_locked(
        self,
        requests: list[GenerationRequest],
        prompts: list[list[int]],
        cancel: threading.Event | None,
        started: float,
    ) -> Generator[BatchEvent, None, None]:
        shared = shared_prefix(prompts)
        head = prompts[0][:shared]
        reused = self._prompts.reuse(self._model, prompts[0][: shared + 1])
        cache = self._prompts.cache
        assert cache is not None
        self._prompts.tokens = []  # until the head is in the cache
        self._prefill(cache, head[reused:])
        self._prompts.tokens = list(head)
        first = requests[0]

        def processors() -> list[Any]:
            # The batch generator shows processors the whole prompt: no window to add.
            return mlx_sampling(self._mx, first.sampling, self._vocab_size, [])[1]

        engine = BatchModel(
            self._model,
            self._byte_table,
            self._decode_completion,
            self._end_ids.__contains__,
            self._vocab_size,
            processors,
        )
        # Sequence 0 is charged with the head it evaluated; every sequence with its rest.
        evaluated = [len(p) - shared for p in prompts]
        evaluated[0] += len(head) - reused
        yield from decode_batch(
            engine,
            cache,
            head,
            [p[shared:] for p in prompts],
            first.sampling,
            [r.seed for r in requests],
            first.stop,
            cancel,
            started,
            evaluated,
        )

    def _prefill(self, cache: list[Any], tokens: list[int]) -> None:
        """Evaluate `tokens` into `cache`, in the chunks mlx-lm's generate_step uses."""
        mx = self._mx
        step = PREFILL_STEP
        for start in range(0, len(tokens), step):
            self._model(mx.array(tokens[start : start + step])[None], cache=cache)
            mx.eval([c.state for c in cache])
