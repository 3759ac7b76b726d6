"""Likelihood probes: the log-probability of each answer option after each framing.

For every (condition, probe) cell of a session's plan whose probe has options, the prompt
is built exactly as the runner builds that trial's prompt (`run.prompts.first_turn_prompt`)
and evaluated once; the probe's options are then scored as continuations of it, decoded
together (`LogprobScope.sequences`, laid out by backends/continuations.py), so an option
costs only its own tokens. On an OpenAI-compatible
server that echoes prompt log-probabilities (`ContinuationLogprobs`), each option is one
request for prompt + option. The cells run in the runner's prefix-reusing order (a training
study's cells grouped by LoRA adapter, each adapter applied once and its cells scored under
it), each is saved to the session as soon as it is done, and a cancel stops between
cells. Values do not depend on the order or on what ran
before (the engines guarantee it; tests/unit/test_options.py).

The text scored follows the prompt as the model would write it: in transcript mode after
"Assistant:" with one space (" " + the option's text, stripped as demonstrations are), in
chat mode the text as written. Format: docs/scenario-format.md, docs/session-format.md.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from persona_tui.backends.base import (
    Backend,
    ContinuationLogprobs,
    LogprobScope,
    TokenLogprobs,
)
from persona_tui.errors import PersonaError
from persona_tui.run.arm_model import ArmModels
from persona_tui.run.events import OptionsProgress, OptionsSummary
from persona_tui.run.plan import TrialSpec, order_for_prefix_reuse
from persona_tui.run.prompts import ResolvedMode, first_turn_prompt
from persona_tui.scenario.model import Option, Scenario
from persona_tui.session.model import OptionCell, OptionScore, Plan
from persona_tui.session.store import SessionStore

OPTIONS_UNSUPPORTED = (
    "this backend cannot score options: it gives no prompt log-probabilities; use llama.cpp, "
    "MLX, or a server that echoes them (vLLM, llama-cpp-python's server)"
)


ProgressCallback = Callable[[OptionsProgress], None]

# The most tokens one decode of a probe's options holds (recorded with each option cell as
# `batch`): the options of a probe go in one decode up to this size.
OPTION_BATCH = 512


def option_cells(scenario: Scenario, plan: Plan) -> list[tuple[str, str, int]]:
    """The (condition, probe, replicate) cells a plan scores: its probes that have options,
    under each arm (each replicate of a replicated condition)."""
    probes = [p for p in plan.probes if scenario.probe(p).options]
    return [(condition, probe, replicate) for condition, replicate in plan.arms for probe in probes]


def can_score_options(backend: object) -> bool:
    """True when `backend` can score options (`TokenLogprobs` or `ContinuationLogprobs`;
    a server may still answer that it gives no prompt log-probabilities)."""
    return isinstance(backend, TokenLogprobs | ContinuationLogprobs)


class _Scorer(Protocol):
    def prompt(self, prompt: str) -> int:
        """Take the prompt the next options follow; its size in tokens."""
        ...

    def options(self, texts: Sequence[str]) -> list[list[float]]:
        """The log-probability of each token of each text after the prompt."""
        ...


class _EngineScorer:
    """Token ids from the engine: the prompt evaluated once (reusing the KV cache), a
    probe's options decoded together after it (`LogprobScope.sequences`)."""

    def __init__(self, scope: LogprobScope) -> None:
        self._scope = scope
        self._prompt = ""
        self._tokens: list[int] = []

    def prompt(self, prompt: str) -> int:
        self._prompt, self._tokens = prompt, self._scope.tokenize(prompt)
        self._scope.evaluate(self._tokens)
        return len(self._tokens)

    def options(self, texts: Sequence[str]) -> list[list[float]]:
        scope = self._scope
        tokens = [scope.continuation(self._prompt, self._tokens, text) for text in texts]
        return scope.sequences(tokens, OPTION_BATCH)


class _ServerScorer:
    """A server's echoed prompt log-probabilities: one request per option."""

    def __init__(self, backend: ContinuationLogprobs, count: Callable[[str], int]) -> None:
        self._backend = backend
        self._count = count
        self._prompt = ""

    def prompt(self, prompt: str) -> int:
        self._prompt = prompt
        return self._count(prompt)

    def options(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._backend.continuation_logprobs(self._prompt, text) for text in texts]


@contextlib.contextmanager
def _scoring(backend: Backend) -> Iterator[_Scorer]:
    if isinstance(backend, TokenLogprobs):
        with backend.logprob_scope() as scope:
            yield _EngineScorer(scope)
    elif isinstance(backend, ContinuationLogprobs):
        yield _ServerScorer(backend, backend.count_tokens)
    else:
        raise PersonaError(OPTIONS_UNSUPPORTED)


def scored_text(mode: ResolvedMode, option: Option) -> str:
    """The continuation scored for an option: what follows the prompt in this mode."""
    return " " + option.text.strip() if mode == "transcript" else option.text


def score_options(
    scenario: Scenario,
    backend: Backend,
    store: SessionStore,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> OptionsSummary:
    """Score every option cell of the session's plan not yet in it; save each as it finishes.

    Raises PersonaError when the backend cannot score (OPTIONS_UNSUPPORTED) and there is
    something to score; engine failures raise GenerationError (finished cells stay saved).
    """
    plan = store.session.header.plan
    cells = option_cells(scenario, plan)
    done = {(cell.condition, cell.probe, cell.replicate) for cell in store.session.option_cells}
    pending = [cell for cell in cells if cell not in done]
    finished = len(cells) - len(pending)
    if not pending:
        return OptionsSummary(0, finished, len(cells), cancelled=False)
    if not can_score_options(backend):
        raise PersonaError(OPTIONS_UNSUPPORTED)
    mode = plan.prompt_mode
    specs = [
        TrialSpec(condition, probe, 0, 0, replicate) for condition, probe, replicate in pending
    ]
    prompts = {
        spec.key: first_turn_prompt(scenario, mode, backend, spec.condition, spec.probe)
        for spec in specs
    }
    models = ArmModels(backend, store.session.header)
    keys = models.keys(s.arm for s in specs)
    scored = 0
    ordered = order_for_prefix_reuse(specs, prompts, keys)
    # One adapter and steering at a time (a scoring scope holds the model, so they are
    # applied between).
    for _key, group_iter in itertools.groupby(ordered, key=lambda s: keys.get(s.arm)):
        group = list(group_iter)
        if cancel is not None and cancel.is_set():
            break
        models.use(group[0].arm)
        with _scoring(backend) as scorer:
            for spec in group:
                if cancel is not None and cancel.is_set():
                    break
                cell = _score_cell(scenario, mode, scorer, spec, prompts[spec.key])
                store.save_option_cell(cell)
                scored += 1
                finished += 1
                if progress is not None:
                    progress(OptionsProgress(cell, finished, len(cells)))
    cancelled = cancel is not None and cancel.is_set() and finished < len(cells)
    return OptionsSummary(scored, finished, len(cells), cancelled=cancelled)


def _score_cell(
    scenario: Scenario,
    mode: ResolvedMode,
    scorer: _Scorer,
    spec: TrialSpec,
    prompt: str,
) -> OptionCell:
    """Score one cell's options after its prompt."""
    clock = time.perf_counter()
    prompt_tokens = scorer.prompt(prompt)
    options = scenario.probe(spec.probe).options
    texts = [scored_text(mode, option) for option in options]
    scores = [
        OptionScore(
            id=option.id,
            label=option.label,
            text=text,
            logprob=math.fsum(values),
            n_tokens=len(values),
            token_logprobs=tuple(values),
        )
        for option, text, values in zip(options, texts, scorer.options(texts), strict=True)
    ]
    return OptionCell(
        condition=spec.condition,
        probe=spec.probe,
        prompt=prompt,
        prompt_tokens=prompt_tokens,
        seconds=round(time.perf_counter() - clock, 4),
        options=tuple(scores),
        batch=OPTION_BATCH,
        replicate=spec.replicate,
    )
