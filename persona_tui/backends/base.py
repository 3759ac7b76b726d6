"""The Backend protocol: what the runner needs from any engine, and optional capabilities.

Every trial becomes a plain text prompt before generation (chat templates are
rendered by the backend via `render_chat`), so the session can record exactly
what the model saw.

A backend may offer more than `Backend`; callers ask with `isinstance` against these
runtime-checkable protocols, never by the backend's class:

- `TokenLogprobs`: next-token log-probabilities and teacher-forced scoring of
  continuations (the offline judge, scoring/logprobs.py);
- `ParallelRequests`: `generate` may run in several threads at once (`--parallel`);
- `ContinuationLogprobs`: the log-probabilities of a text's tokens after a prompt, the
  engine tokenizing (a server that echoes prompt log-probabilities; likelihood probes);
- `BatchedGeneration`: several sequences decoded together, one token of each per step
  (`--batch`, the samples of one cell);
- `LoraAdapters`: a LoRA adapter (a GGUF file, an mlx-lm folder) applied on top of the
  loaded weights, or none (the adapters of a training study, issue 12);
- `EndOfTurnToken`: the token a chat turn ends with (training data, local engines);
- `HiddenStates`: each layer's output (the residual stream) read while text is evaluated
  (persona vectors: extraction and the projections a run records);
- `Steering`: a vector added to chosen layers' outputs while generating and scoring
  (steered conditions, control vectors).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from persona_tui.values import FinishReason, ModelInfo, SamplingParams

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    seed: int
    sampling: SamplingParams
    stop: tuple[str, ...] = ()
    # Length (in characters) of the leading part of `prompt` that other trials share, e.g.
    # a condition's framing and demonstrations; a backend with a prompt cache may use it
    # to reuse that part in full. 0: no hint.
    framing_chars: int = 0


@dataclass(frozen=True)
class GenerationResult:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    # Prompt tokens the engine actually evaluated (the rest came from its prefix cache).
    prompt_tokens_evaluated: int
    seconds: float


TextCallback = Callable[[str], None]


class Backend(Protocol):
    """A loaded model. One instance is used by one thread at a time (implementations guard it)."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def has_chat_template(self) -> bool: ...

    @property
    def chat_template(self) -> str | None:
        """The model's own chat template text, or None when it has none."""
        ...

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """Render messages with the model's own chat template, ending with the assistant's turn."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def generate(
        self,
        request: GenerationRequest,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """Generate a continuation of `request.prompt`, calling `on_text` with each new piece.

        Stops at a stop string (not included in the text), at `max_tokens`, or within a
        token of `cancel` being set (finish_reason "cancelled").
        Raises PromptTooLongError when the prompt does not fit the context.
        """
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- capabilities

# Log-probabilities of the next token over the whole vocabulary: a float64 numpy array
# indexed by token id (numpy is imported by the engines, never by this module).
LogprobRow = Any


class LogprobScope(Protocol):
    """The model held for scoring, from `TokenLogprobs.logprob_scope()` (one thread at a time).

    Token ids are the model's own. `evaluate` reads the prompt (reusing what the engine
    has cached only where that gives exactly the same numbers as evaluating it afresh);
    `step` then walks a tree of continuations from it, one token at a time.
    """

    @property
    def decodes(self) -> int:
        """Tokens decoded by `step` since the last `evaluate`."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """The tokens of a prompt, exactly as `generate` would see them."""
        ...

    def continuation(self, prompt: str, prompt_tokens: Sequence[int], text: str) -> list[int]:
        """The tokens of `text` as the model would write it right after `prompt`."""
        ...

    def tokens_starting_with(self, first_bytes: bytes) -> Any:
        """A boolean numpy mask over the vocabulary: tokens whose text starts with one of
        `first_bytes` (e.g. b"0123456789": the tokens that start with a digit)."""
        ...

    def evaluate(self, prompt_tokens: Sequence[int], split: int = 0) -> LogprobRow:
        """Evaluate a prompt; the log-probabilities of the token after it.

        `split`: how many leading tokens the prompt shares with the prompts scored around
        it (a judge rubric's text before the answer). An engine whose numbers depend on
        its batches (llama.cpp) ends a batch there, so the next prompt reuses all of that
        part exactly; the values then depend on (prompt, split) alone, never on what was
        scored before. Raises PromptTooLongError when the prompt leaves no room in the
        context.
        """
        ...

    def step(self, depth: int, token: int) -> LogprobRow:
        """Decode `token` at position prompt + `depth` (forgetting deeper decodes); the
        log-probabilities of the token after it."""
        ...

    def sequences(self, continuations: Sequence[Sequence[int]], rows: int) -> list[list[float]]:
        """The log-probability of each token of each continuation of the evaluated prompt.

        After `evaluate(prompt_tokens)`: each continuation's first value is read from the
        row `evaluate` returned; the rest come from decoding the continuations together
        after the prompt (at most `rows` tokens per decode; an engine lays them out as
        backends/continuations.py does), and they are forgotten afterwards, so the prompt's
        state is unchanged (deeper `step` decodes are forgotten too). The batches depend on
        (prompt, the set of continuations, rows) alone: a value never depends on their
        order or on what was scored before. Raises PromptTooLongError when they do not fit
        the context.
        """
        ...


@runtime_checkable
class TokenLogprobs(Protocol):
    """A backend that gives next-token log-probabilities (teacher-forced scoring)."""

    def logprob_scope(self) -> AbstractContextManager[LogprobScope]:
        """Hold the model for scoring: no generation runs meanwhile.

        Afterwards the next generation behaves as if nothing was scored (the engine's
        prompt cache is made consistent again). Engine failures inside the scope raise
        GenerationError.
        """
        ...


@runtime_checkable
class ContinuationLogprobs(Protocol):
    """A backend that scores a continuation with its own tokenizer (no token ids exposed):
    an OpenAI-compatible server that echoes prompt log-probabilities."""

    def continuation_logprobs(self, prompt: str, continuation: str) -> list[float]:
        """The log-probability of each token of `continuation` right after `prompt`.

        Raises PersonaError, in one line, when the engine gives no prompt log-probabilities.
        """
        ...


@runtime_checkable
class ParallelRequests(Protocol):
    """A backend whose `generate` may be called from several threads at once (`--parallel`).

    Only a true `supports_parallel` counts (see `serves_parallel_requests`).
    """

    supports_parallel: bool


def serves_parallel_requests(backend: object) -> bool:
    """True when `backend` serves several `generate` calls at once."""
    return isinstance(backend, ParallelRequests) and bool(backend.supports_parallel)


@runtime_checkable
class EndOfTurnToken(Protocol):
    """A local model that says which token ends a chat turn (training data ends each
    chat-mode answer with it)."""

    @property
    def end_of_turn_token(self) -> int:
        """The template's end-of-turn token when the model has one (`<|im_end|>`,
        `<|eot_id|>` ...), else end-of-sequence."""
        ...


@dataclass(frozen=True)
class BatchStarted:
    """Sequence `index` of a batch (the index of its request) begins decoding: at once, or
    when it takes the place of a sequence that ended."""

    index: int


@dataclass(frozen=True)
class BatchText:
    """New text of sequence `index` of a batch (the index of its request)."""

    index: int
    text: str


@dataclass(frozen=True)
class BatchDone:
    """Sequence `index` of a batch has ended; the others may go on."""

    index: int
    result: GenerationResult


BatchEvent = BatchStarted | BatchText | BatchDone


@runtime_checkable
class BatchedGeneration(Protocol):
    """A backend that decodes several sequences together, one token of each per step.

    On a CPU a decode step is bound by reading the weights; N sequences per step read
    them once for N tokens. Results depend on which sequences share a batch (the engine
    rounds differently with the batch shape), so callers fix the requests and the batch
    from the plan (run/plan.batch_groups).
    """

    @property
    def max_batch(self) -> int:
        """The most sequences one `generate_batch` call takes."""
        ...

    def generate_batch(
        self,
        requests: Sequence[GenerationRequest],
        cancel: threading.Event | None = None,
        batch: int | None = None,
    ) -> Generator[BatchEvent, None, None]:
        """Decode one sequence per request, `batch` at a time (None: all together); events
        as text arrives.

        The requests share `sampling` and `stop`; each has its own prompt and seed. They
        start in order; each sequence reports `BatchStarted`, streams `BatchText`, then
        ends with one `BatchDone` (the same result as
        `generate` would describe: stop string, end token, max_tokens, or "cancelled"
        within a token of `cancel`; requests not started by then end "cancelled" without
        starting), while the others go on. The same requests and batch give the same texts
        whatever ran before. Close the iterator (or exhaust it) to release the
        model. Raises PromptTooLongError, before anything is evaluated, when the batch
        does not fit the context.
        """
        ...


@runtime_checkable
class LoraAdapters(Protocol):
    """A backend that applies one LoRA adapter (made for its engine and model) or none.

    An adapter is what backends/adapter_files.py describes for the engine: a LoRA adapter
    GGUF file (llama.cpp) or an mlx-lm adapter folder (MLX). Switching adapters forgets
    every cached evaluation (prompt cache, scored prompts): what was computed under one
    adapter is wrong under another. None gives exactly the untouched model's numbers. Each
    adapter is loaded once and kept until `close`.
    """

    def use_adapter(self, path: str | None) -> None:
        """Apply the adapter at `path` from the next evaluation on (None: no adapter).

        Raises ModelLoadError naming the file when it is missing, not an adapter, or made
        for another model (the backend is then left without an adapter).
        """
        ...


@dataclass(frozen=True)
class HiddenStateMeans:
    """Residual-stream activations read after a prompt and its continuations.

    Layer `il` (0-based) means that layer's output, the residual stream after its attention
    and feed-forward blocks (llama.cpp's `l_out-il`; the output of transformers' decoder
    layer il, which is `hidden_states[il + 1]` except for the last layer, given after the
    final norm), including any steering vector added at that layer. An empty continuation
    has count 0 and a mean of zeros.
    `prompt_last[k]` is layer `layers[k]`'s output at the prompt's last token (the state the
    answer is written from); `means[j][k]` the mean of layer `layers[k]`'s outputs at the
    positions of continuation j's tokens (teacher-forced after the prompt); `counts[j]` that
    continuation's token count. Arrays are numpy float64: (len(layers), n_embd) and
    (len(continuations), len(layers), n_embd).
    """

    layers: tuple[int, ...]
    prompt_last: Any
    means: Any
    counts: tuple[int, ...]


@runtime_checkable
class HiddenStates(Protocol):
    """A backend that reads each layer's output while it evaluates tokens.

    Values are those of the model as it generates now: its weights, the adapter applied
    (`LoraAdapters`) and the steering applied (`Steering`). A measurement never changes
    what generation or scoring give afterwards.
    """

    @property
    def n_layers(self) -> int:
        """The number of transformer layers (valid layers: 0 .. n_layers - 1)."""
        ...

    @property
    def n_embd(self) -> int:
        """The width of the residual stream."""
        ...

    def hidden_states(
        self,
        prompt: Sequence[int],
        continuations: Sequence[Sequence[int]],
        layers: Sequence[int],
    ) -> HiddenStateMeans:
        """Evaluate `prompt` then each continuation after it (each alone after the prompt, as
        if it were the only one), and return the layers' outputs (see HiddenStateMeans).

        Raises PromptTooLongError when the prompt and the longest continuation do not fit
        the context, ValueError for a layer out of range.
        """
        ...


@runtime_checkable
class Steering(Protocol):
    """A backend that adds a vector to chosen layers' outputs (a control vector).

    The vector of layer `il` (1 .. n_layers - 1, as llama.cpp's control vectors number
    them) is added to that layer's output at every position, in generation, batched
    generation, scoring and hidden-state measurement alike. Switching forgets every cached
    evaluation; None gives exactly the unsteered model's numbers.
    """

    def use_steering(self, vectors: Mapping[int, Any] | None) -> None:
        """Add `vectors[il]` (n_embd float values, already scaled) to layer il's output
        from the next evaluation on; None: no steering. Raises ValueError for a layer out
        of range or a vector of the wrong width (steering is then off)."""
        ...
