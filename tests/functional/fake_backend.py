"""A scripted Backend and a batched-decoding stand-in Runner for UI-only tests (rendering)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from persona_tui.backends.base import ChatMessage, GenerationRequest, GenerationResult, TextCallback
from persona_tui.run.events import (
    EventCallback,
    RunFinished,
    RunStarted,
    TextChunk,
    TrialFinished,
    TrialStarted,
)
from persona_tui.run.plan import TrialSpec, plan_trials
from persona_tui.run.runner import RunControl
from persona_tui.session.model import SessionStatus, Trial
from persona_tui.session.store import SessionStore
from persona_tui.values import ModelInfo


class ScriptedBackend:
    """Answers every prompt with the same pieces of text, streamed one by one."""

    def __init__(self, pieces: Sequence[str]) -> None:
        self.pieces = list(pieces)
        self._info = ModelInfo(
            backend="scripted",
            backend_version="0",
            path="/scripted/model.gguf",
            name="scripted-model",
            sha256="0" * 64,
            size_bytes=1,
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def has_chat_template(self) -> bool:
        return False

    @property
    def chat_template(self) -> str | None:
        return None

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return "\n".join(m.content for m in messages)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(
        self,
        request: GenerationRequest,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        for piece in self.pieces:
            if on_text is not None:
                on_text(piece)
        return GenerationResult(
            text="".join(self.pieces),
            finish_reason="stop",
            prompt_tokens=self.count_tokens(request.prompt),
            completion_tokens=len(self.pieces),
            prompt_tokens_evaluated=self.count_tokens(request.prompt),
            seconds=0.0,
        )

    def close(self) -> None:
        pass


class BatchedRunner:
    """Stands in for `Runner` with batched decoding: the events the app sees, no engine.

    For every (condition, probe) cell it starts all samples (`TrialStarted` × N), streams
    their pieces interleaved (sample 0's first piece, sample 1's first piece, …), and
    finishes them in reverse order of sample (each saved first), as a batch whose later
    sequences happen to stop sooner would. `pieces(spec)` gives a trial's streamed text.
    """

    def __init__(
        self,
        scenario: object,
        backend: object,
        store: SessionStore,
        pieces: Callable[[TrialSpec], Sequence[str]] | None = None,
    ) -> None:
        self.store = store
        self.pieces = pieces or default_pieces
        self.batches: list[int] = []  # the plan's `batch` at every run() call

    def run(
        self,
        on_event: EventCallback,
        control: RunControl | None = None,
        parallel: int = 1,
        *,
        last_pass: bool = True,
    ) -> str:
        control = control or RunControl()
        self.batches.append(self.store.session.header.plan.batch)
        plan = self.store.session.header.plan
        finished = {t.key for t in self.store.session.trials}
        specs = [s for s in plan_trials(plan) if s.key not in finished]
        done = len(finished)
        on_event(RunStarted(total=plan.total, done=done))
        cells: dict[tuple[str, str], list[TrialSpec]] = {}
        for spec in specs:
            cells.setdefault((spec.condition, spec.probe), []).append(spec)
        position = 0
        for cell in cells.values():
            if control.cancelled.is_set():
                break
            for spec in cell:
                on_event(TrialStarted(spec, position))
                position += 1
            streams = {spec: list(self.pieces(spec)) for spec in cell}
            for step in range(max(len(p) for p in streams.values())):
                for spec, pieces in streams.items():
                    if step < len(pieces):
                        on_event(TextChunk(spec, pieces[step], 0))
            for spec in reversed(cell):
                trial = Trial(
                    condition=spec.condition,
                    probe=spec.probe,
                    sample=spec.sample,
                    seed=spec.seed,
                    prompt="prompt",
                    response="".join(streams[spec]),
                    finish_reason="stop",
                    prompt_tokens=1,
                    completion_tokens=len(streams[spec]),
                    started="2026-01-02T03:04:05.000+00:00",
                    seconds=0.0,
                )
                self.store.save_trial(trial)
                done += 1
                on_event(TrialFinished(trial, done, plan.total, 1))
        status: SessionStatus = "complete" if done == plan.total else "interrupted"
        if status != "complete" or last_pass:  # as Runner.run: a later pass writes it
            self.store.set_status(status)
        on_event(RunFinished(status, done, plan.total, 0))
        return status


def default_pieces(spec: TrialSpec) -> list[str]:
    """Some words per sample, with markup that must show literally."""
    words = [f"s{spec.sample}w{i} " for i in range(6 + 3 * spec.sample)]
    return ["[bold]not bold[/bold] ", *words]


class BatchingScriptedBackend(ScriptedBackend):
    """A ScriptedBackend that says it decodes sequences together, so plans record a batch
    (the app's stand-in runner, `BatchedRunner`, plays the batched events)."""

    max_batch = 64

    def generate_batch(
        self, requests: object, cancel: object = None, width: object = None
    ) -> object:
        raise NotImplementedError("BatchedRunner plays batched runs")
