"""Next-token log-probabilities from llama.cpp without `logits_all=True` (`TokenLogprobs`).

llama-cpp-python's logprob path (`logits_all=True`) keeps logits for every prompt position
and runs several times slower. Here the prompt is evaluated once, reusing the KV cache of
the previous scored prompt, and only the last position's logits are read
(`llama_get_logits_ith(ctx, -1)`); continuations are then decoded one token at a time
from the cached prompt (`step`). The scorers that walk those continuations are in
scoring/logprobs.py; `LlamaCppBackend.logprob_scope` hands them a `LlamaLogprobScope`
under the backend's lock.

The prompt reuses the KV cache like the backend's generation does: it is evaluated in the
batch plan of batching.py (blocks of `EVAL_BLOCK` positions, and a batch ending at the
caller's `split`: the part shared with the prompts scored around it, such as a judge
rubric's text before the answer), and the previous scored prompt's KV cells are kept up to
a batch end both plans share, so the logits do not depend on what was scored before (the
CPU kernels round differently with the batch shape).

`sequences` scores the answer options of a probe after the evaluated prompt, all in one
decode (backends/continuations.py: each option its own sequence sharing the prompt's KV
cells, logits only at the rows read). A row's log-sum-exp is taken in float32 with a
float64 sum: a float64 log-softmax of the demo model's 262,144-logit rows cost as much as
the decode. The options' KV cells are removed
afterwards, so every probe starts from the same prompt state and its batch depends on the
set of (prompt, options) alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from persona_tui.backends.common import continuation_tokens, log_softmax
from persona_tui.backends.continuations import ContinuationLayout, Row
from persona_tui.backends.llamacpp.batching import batch_ends, reusable_prefix
from persona_tui.errors import GenerationError, PromptTooLongError


@dataclass
class ScoredPrompt:
    """The last prompt scored on one backend (kept on the backend) and its batch plan:
    the next may reuse it up to a batch end both plans share. Empty while an evaluation
    is unfinished."""

    tokens: list[int] = field(default_factory=list)
    ends: tuple[int, ...] = ()


class LlamaLogprobScope:
    """Scoring inside one hold of the backend's lock (see backends.base.LogprobScope)."""

    def __init__(
        self,
        llama: Any,
        tokenize: Callable[[str], list[int]],
        previous: ScoredPrompt,
        block: int,
        eval_in_plan: Callable[[Sequence[int], tuple[int, ...]], None],
    ) -> None:
        self.llama = llama
        self._tokenize = tokenize
        self._previous = previous
        self._block = block
        self._eval_in_plan = eval_in_plan  # evaluates tokens in the batches a plan gives
        self.n_vocab = int(llama.n_vocab())
        self.base = 0
        self._decodes = 0
        self._prompt_row: Any = None  # the log-probabilities `evaluate` returned

    @property
    def decodes(self) -> int:
        return self._decodes

    def tokenize(self, text: str) -> list[int]:
        return self._tokenize(text)

    def continuation(self, prompt: str, prompt_tokens: Sequence[int], text: str) -> list[int]:
        """Tokens of `text` as the model would write it right after `prompt`."""
        return continuation_tokens(self._tokenize, prompt, prompt_tokens, text, self._encode_alone)

    def _encode_alone(self, text: str) -> list[int]:
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def tokens_starting_with(self, first_bytes: bytes) -> Any:
        """A boolean mask of the vocabulary's tokens whose text starts with one of `first_bytes`."""
        import ctypes

        import llama_cpp
        import numpy as np

        llama = self.llama
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        mask = np.zeros(self.n_vocab, dtype=bool)
        size = 64
        buffer = ctypes.create_string_buffer(size)
        to_piece = llama_cpp.llama_token_to_piece
        for token in range(self.n_vocab):
            n = to_piece(vocab, token, buffer, size, 0, False)
            if n < 0:  # a piece longer than the buffer: grow it and ask again
                size = -n
                buffer = ctypes.create_string_buffer(size)
                n = to_piece(vocab, token, buffer, size, 0, False)
            mask[token] = n > 0 and buffer.raw[0] in first_bytes
        return mask

    def evaluate(self, prompt_tokens: Sequence[int], split: int = 0) -> Any:
        """Evaluate the prompt from the cached state; the logprobs after its last token."""
        previous, previous_ends = self._previous.tokens, self._previous.ends
        self._previous.tokens, self._previous.ends = [], ()  # until this one has finished
        self.base = len(prompt_tokens)
        self._decodes = 0
        n_ctx = int(self.llama.n_ctx())
        if self.base + 4 > n_ctx:
            raise PromptTooLongError(
                f"the judge prompt is {self.base} tokens, more than the judge model's context "
                f"of {n_ctx} tokens; use a judge with a larger context (n_ctx) or shorter "
                "responses"
            )
        self._prompt_row = None
        ends = batch_ends(self.base, self._block, split)
        self._eval_prompt(prompt_tokens, ends, previous, previous_ends)
        self._previous.tokens, self._previous.ends = list(prompt_tokens), ends
        self._prompt_row = self.logprobs()
        return self._prompt_row

    def _eval_prompt(
        self,
        tokens: Sequence[int],
        ends: tuple[int, ...],
        previous: Sequence[int],
        previous_ends: tuple[int, ...],
    ) -> None:
        import numpy as np

        llama = self.llama
        # The KV cells hold the previous prompt (then branch decodes) up to n_tokens.
        cached = min(int(llama.n_tokens), len(previous))
        if cached:
            same = llama.input_ids[:cached] == np.asarray(previous[:cached], dtype=np.intc)
            cached = cached if bool(same.all()) else int(np.argmin(same))
        keep = reusable_prefix(previous[:cached], previous_ends, tokens, ends)
        llama.n_tokens = keep
        self._eval_in_plan(list(tokens[keep:]), ends)

    def logprobs(self, index: int = -1) -> Any:
        """log-softmax of the logits of batch row `index` (default: the last evaluated
        position) as a float64 array."""
        import llama_cpp
        import numpy as np

        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, index)
        return log_softmax(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)))

    def sequences(self, continuations: Sequence[Sequence[int]], rows: int) -> list[list[float]]:
        """The log-probability of each token of each continuation after the evaluated prompt.

        All of them are decoded together (backends/continuations.py: each its own sequence
        sharing the prompt's KV cells, decodes of at most `rows` tokens, logits only at the
        rows read); their cells are removed afterwards, so the prompt's state is unchanged.
        The batches depend on the set of continuations alone.
        """
        import llama_cpp

        if self._prompt_row is None:
            raise GenerationError("sequences() needs a prompt: call evaluate() first")
        layout = ContinuationLayout(
            continuations,
            rows=max(1, min(rows, int(self.llama.n_batch))),
            # Sequence 0 holds the prompt; the others are free while scoring.
            sequences=max(1, int(self.llama.context_params.n_seq_max) - 1),
        )
        n_ctx = int(self.llama.n_ctx())
        longest = max((len(c) for c in layout.continuations), default=0)
        if self.base + max(longest, layout.largest_group) > n_ctx:
            raise PromptTooLongError(
                f"the prompt ({self.base} tokens) and its answer options "
                f"({layout.largest_group} tokens to decode together, the longest option "
                f"{longest}) do not fit the model's context of {n_ctx} tokens; use a larger "
                "n_ctx or shorter framings or options"
            )
        values = [[float(self._prompt_row[c[0]])] if c else [] for c in layout.continuations]
        memory = llama_cpp.llama_get_memory(self.llama.ctx)
        self._forget_after(self.base)
        for group in layout.groups:
            sequence_of = {member: slot + 1 for slot, member in enumerate(group.members)}
            for slot in sequence_of.values():
                llama_cpp.llama_memory_seq_cp(memory, 0, slot, -1, -1)
            try:
                for decode in group.decodes:
                    self._decode(decode, sequence_of, layout.continuations, values)
            finally:
                for slot in sequence_of.values():
                    llama_cpp.llama_memory_seq_rm(memory, slot, -1, -1)
                self._forget_after(self.base)
        return values

    def _decode(
        self,
        rows: Sequence[Row],
        sequence_of: dict[int, int],
        continuations: Sequence[Sequence[int]],
        values: list[list[float]],
    ) -> None:
        """Decode `rows` in one batch; append each row's value (the log-probability of the
        continuation's next token) to its continuation's values."""
        import llama_cpp

        batch = llama_cpp.llama_batch_init(len(rows), 0, 1)
        try:
            batch.n_tokens = len(rows)
            for i, row in enumerate(rows):
                batch.token[i] = row.token
                batch.pos[i] = self.base + row.depth
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = sequence_of[row.member]
                batch.logits[i] = True
            code = llama_cpp.llama_decode(self.llama.ctx, batch)
            if code != 0:
                raise RuntimeError(f"llama_decode returned {code}")
        finally:
            llama_cpp.llama_batch_free(batch)
        for i, row in enumerate(rows):
            values[row.member].append(self._logprob_at(i, continuations[row.member][row.depth + 1]))
        self._decodes += len(rows)

    def _logprob_at(self, index: int, token: int) -> float:
        """The log-probability of `token` in batch row `index`: the row's log-sum-exp in
        float32 with a float64 sum (a float64 copy of each 262,144-logit row of the demo
        model cost as much as decoding it)."""
        import llama_cpp
        import numpy as np

        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, index)
        row = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        top = float(row.max())
        total = float(np.exp(row - np.float32(top)).sum(dtype=np.float64))
        return float(row[token]) - top - math.log(total)

    def _forget_after(self, position: int) -> None:
        """Remove every KV cell from `position` on (the prompt before it stays)."""
        import llama_cpp

        memory = llama_cpp.llama_get_memory(self.llama.ctx)
        llama_cpp.llama_memory_seq_rm(memory, -1, position, -1)
        self.llama.n_tokens = position

    def step(self, depth: int, token: int) -> Any:
        """Decode `token` at prompt + `depth` (dropping deeper cached tokens); its logprobs."""
        self.llama.n_tokens = self.base + depth
        self.llama.eval([token])
        self._decodes += 1
        return self.logprobs()
