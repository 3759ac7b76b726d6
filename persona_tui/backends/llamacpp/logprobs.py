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

`sequence` scores a whole continuation (an answer option) after the evaluated prompt: its
tokens are decoded in one `llama_batch` with logits at every position but the last (the
low-level API, so only those rows are computed and read, never `logits_all`), and their KV
cells are removed afterwards, so every option starts from the same prompt state and its
batch depends on (prompt, option) alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from persona_tui.backends.common import continuation_tokens, log_softmax
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

    def sequence(self, tokens: Sequence[int]) -> list[float]:
        """The log-probability of each of `tokens` after the evaluated prompt and the
        tokens before it; the prompt's state is unchanged afterwards."""
        if self._prompt_row is None:
            raise GenerationError("sequence() needs a prompt: call evaluate() first")
        tokens = list(tokens)
        if not tokens:
            return []
        n_ctx = int(self.llama.n_ctx())
        if self.base + len(tokens) > n_ctx:
            raise PromptTooLongError(
                f"the prompt ({self.base} tokens) and an option of {len(tokens)} tokens do not "
                f"fit the model's context of {n_ctx} tokens; use a larger n_ctx or shorter "
                "framings or options"
            )
        values = [float(self._prompt_row[tokens[0]])]
        self._forget_after(self.base)
        try:
            values += self._decode_rows(tokens)
        finally:
            self._forget_after(self.base)
        return values

    def _decode_rows(self, tokens: list[int]) -> list[float]:
        """Decode `tokens` right after the prompt, in batches of the context's batch size
        (one for any answer option), with logits at every position; the log-probability of
        each token after the first from the row before it.

        The last token is decoded too, though its row is not read: the CPU kernels round by
        tiles of the batch, so a batch of exactly the option's tokens gives what evaluating
        prompt and option as two batches does (measured: dropping it moves values by up to
        0.1 nats on a Q4_K model).
        """
        import llama_cpp

        size = max(1, int(self.llama.n_batch))
        values: list[float] = []
        batch = llama_cpp.llama_batch_init(min(size, len(tokens)), 0, 1)
        try:
            for start in range(0, len(tokens), size):
                chunk = tokens[start : start + size]
                batch.n_tokens = len(chunk)
                for i, token in enumerate(chunk):
                    batch.token[i] = token
                    batch.pos[i] = self.base + start + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = start + i + 1 < len(tokens)
                code = llama_cpp.llama_decode(self.llama.ctx, batch)
                if code != 0:
                    raise RuntimeError(f"llama_decode returned {code}")
                rows = min(len(chunk), len(tokens) - 1 - start)
                values += [float(self.logprobs(i)[tokens[start + i + 1]]) for i in range(rows)]
                self._decodes += len(chunk)
        finally:
            llama_cpp.llama_batch_free(batch)
        return values

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
