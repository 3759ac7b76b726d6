"""Training examples → token ids, exactly as a probe's prompt reaches the model.

Each example is framed by its condition (`[conditions.training]`: system text, user turn
around `{user}`), rendered by run/prompts.py like a probe (transcript or the model's chat
template, `resolve_mode` deciding as for a run), and tokenized by the model's own tokenizer:
llama.cpp with only the vocabulary loaded (an MLX model folder: the MLX backend), through the
same backend code that tokenizes prompts for generation and scoring
(`logprob_scope().tokenize` / `.continuation`). The loss
is on the completion only: the assistant text and the end of its turn ("\\n\\nUser:" in a
transcript, where probing stops; the end-of-turn token in chat mode).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from persona_tui.backend_names import LLAMA_CPP
from persona_tui.backends.base import Backend, EndOfTurnToken, TokenLogprobs
from persona_tui.backends.registry import open_tokenizer
from persona_tui.errors import TrainingError
from persona_tui.run.prompts import (
    USER_TAG,
    ResolvedMode,
    framed_messages,
    render_prompt,
    resolve_mode,
)
from persona_tui.scenario.model import Condition, Scenario, TrainingExample

TRANSCRIPT_END = "\n\n" + USER_TAG
"""What ends an answer in a transcript: the blank line and the next exchange's tag."""


@dataclass(frozen=True)
class TokenizedExample:
    prompt: tuple[int, ...]  # the framed prompt, as a probe's would be (no loss)
    completion: tuple[int, ...]  # the answer and the end of its turn (the loss)
    source: str

    @property
    def ids(self) -> tuple[int, ...]:
        return self.prompt + self.completion


@dataclass(frozen=True)
class ConditionData:
    """One training condition's token sequences and what identifies them."""

    condition: str
    mode: ResolvedMode
    train: tuple[TokenizedExample, ...]
    heldout: tuple[TokenizedExample, ...]
    sha256: str  # of the token ids (train, then held-out): the data the adapter learns

    @property
    def train_tokens(self) -> int:
        return sum(len(e.ids) for e in self.train)


class ModelTokenizer(Backend, TokenLogprobs, EndOfTurnToken, Protocol):
    """What tokenizing training data needs of a model: its chat template (`render_chat`),
    its tokenizer (`logprob_scope`) and its end-of-turn token (a local engine's backend)."""


@contextmanager
def vocabulary(model_path: Path) -> Iterator[ModelTokenizer]:
    """The GGUF's tokenizer and chat template, without its weights (llama.cpp vocab_only)."""
    with open_tokenizer(LLAMA_CPP, model_path) as backend:
        yield cast(ModelTokenizer, backend)


def tokenize_condition(
    scenario: Scenario,
    condition: Condition,
    backend: ModelTokenizer,
    max_tokens: int,
) -> ConditionData:
    """The condition's training and held-out sequences (the scenario's seeded split), by
    the GGUF's vocabulary (`vocabulary`) or an MLX folder's loaded model."""
    framing = condition.training
    training = scenario.training
    if framing is None or training is None:
        raise TrainingError(f"condition {condition.id!r} has no [conditions.training] table")
    mode = resolve_mode(scenario.prompt_mode, backend, scenario.id)
    end_of_turn = backend.end_of_turn_token
    train, heldout = training.split()

    def encode(example: TrainingExample) -> TokenizedExample:
        prompt = render_prompt(mode, framed_messages(framing, example), backend)
        with backend.logprob_scope() as scope:
            prompt_ids = scope.tokenize(prompt)
            if mode == "transcript":
                answer = " " + example.assistant.strip() + TRANSCRIPT_END
                completion = scope.continuation(prompt, prompt_ids, answer)
            else:
                completion = scope.continuation(prompt, prompt_ids, example.assistant.strip())
                completion = [*completion, end_of_turn]
        tokens = TokenizedExample(tuple(prompt_ids), tuple(completion), example.source)
        if len(tokens.ids) > max_tokens:
            raise TrainingError(
                f"{example.source}: the example is {len(tokens.ids)} tokens under condition "
                f"{condition.id!r}, more than the {max_tokens} allowed; shorten it"
            )
        return tokens

    train_ids = tuple(encode(e) for e in train)
    heldout_ids = tuple(encode(e) for e in heldout)
    return ConditionData(
        condition=condition.id,
        mode=mode,
        train=train_ids,
        heldout=heldout_ids,
        sha256=data_sha256(train_ids, heldout_ids),
    )


def data_sha256(train: Sequence[TokenizedExample], heldout: Sequence[TokenizedExample]) -> str:
    """A digest of exactly what is trained on: the token ids and their loss masks."""
    payload = {
        "train": [[list(e.prompt), list(e.completion)] for e in train],
        "heldout": [[list(e.prompt), list(e.completion)] for e in heldout],
    }
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()
