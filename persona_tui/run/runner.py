"""Run the trials of a plan on a backend and record them in a session.

The runner knows nothing of screens: it reports progress as events to a callback that the
CLI (a progress bar) or the TUI (thread-safe message posting) provides, and it can be
paused and cancelled from another thread through a `RunControl`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime

from persona_tui.backends.base import Backend, GenerationRequest, serves_parallel_requests
from persona_tui.errors import PersonaError
from persona_tui.run.plan import TrialSpec, order_for_prefix_reuse, plan_trials
from persona_tui.run.prompts import ResolvedMode, conversation, framing_chars, render_prompt
from persona_tui.scenario.model import Scenario
from persona_tui.session.model import SessionStatus, Trial
from persona_tui.session.store import SessionStore

# Events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStarted:
    total: int
    done: int  # trials already finished (when resuming)


@dataclass(frozen=True)
class TrialStarted:
    spec: TrialSpec
    position: int  # 0-based position among this run's trials


@dataclass(frozen=True)
class TextChunk:
    spec: TrialSpec
    text: str
    turn: int  # 0-based user turn of the probe being answered


@dataclass(frozen=True)
class TrialFinished:
    trial: Trial
    done: int
    total: int
    prompt_tokens_evaluated: int


@dataclass(frozen=True)
class TrialFailed:
    spec: TrialSpec
    error: str


@dataclass(frozen=True)
class RunFinished:
    status: SessionStatus
    done: int
    total: int
    failed: int


RunEvent = RunStarted | TrialStarted | TextChunk | TrialFinished | TrialFailed | RunFinished
# What running one trial gives: the trial (None when cancelled) and the prompt tokens the
# engine evaluated, or the user-facing error that stopped it.
Outcome = tuple[Trial | None, int] | PersonaError
EventCallback = Callable[[RunEvent], None]


class RunControl:
    """Pause, resume and cancel a run from another thread.

    Cancel stops the current generation within a token; pause waits between trials.
    """

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def cancel(self) -> None:
        self.cancelled.set()
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self) -> None:
        self._running.wait()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def first_turn_prompt(
    scenario: Scenario, mode: ResolvedMode, backend: Backend, condition: str, probe: str
) -> str:
    """The exact prompt of a trial's first turn (a single-turn probe's whole prompt)."""
    messages = conversation(scenario.condition(condition), scenario.probe(probe).turns[:1], [])
    return render_prompt(mode, messages, backend)


class Runner:
    """Runs the unfinished trials of a session's plan, saving each one as it finishes."""

    def __init__(self, scenario: Scenario, backend: Backend, store: SessionStore) -> None:
        self.scenario = scenario
        self.backend = backend
        self.store = store
        header = store.session.header
        self.plan = header.plan
        self.sampling = header.sampling

    def first_prompt(self, spec: TrialSpec) -> str:
        return first_turn_prompt(
            self.scenario, self.plan.prompt_mode, self.backend, spec.condition, spec.probe
        )

    def pending(self) -> list[TrialSpec]:
        """Unfinished trials, in prefix-reuse order."""
        finished = {t.key for t in self.store.session.trials}
        specs = [s for s in plan_trials(self.plan) if s.key not in finished]
        prompts = {s.key: self.first_prompt(s) for s in specs}
        return order_for_prefix_reuse(specs, prompts)

    def run(
        self, on_event: EventCallback, control: RunControl | None = None, parallel: int = 1
    ) -> SessionStatus:
        """Run every unfinished trial; return the session's final status.

        With `parallel` 1 the trials run one by one in the calling thread. More than one
        (for backends that serve concurrent requests, e.g. a batching server) runs them in
        a pool of threads, whose `TextChunk` events come from those threads. Either way
        results are saved and reported from the calling thread, in the order they finish.
        """
        control = control or RunControl()
        if parallel < 1:
            raise PersonaError("--parallel must be at least 1")
        if parallel > 1 and not serves_parallel_requests(self.backend):
            raise PersonaError(
                f"--parallel {parallel} needs a backend that serves several requests at once "
                f"(an OpenAI-compatible server); {self.backend.info.backend} runs one at a time"
            )
        total = self.plan.total
        done = len(self.store.session.trials)
        failed = 0
        self.store.set_status("running")
        on_event(RunStarted(total=total, done=done))
        queue = enumerate(self.pending())
        if parallel == 1:
            outcomes = self._one_by_one(queue, on_event, control)
        else:
            outcomes = self._pooled(queue, on_event, control, parallel)
        for spec, outcome in outcomes:
            if isinstance(outcome, PersonaError):
                failed += 1
                on_event(TrialFailed(spec, str(outcome)))
                continue
            trial, evaluated = outcome
            if trial is None:  # cancelled mid-generation: keep nothing of it
                continue
            self.store.save_trial(trial)
            done += 1
            on_event(TrialFinished(trial, done, total, evaluated))
        status: SessionStatus = "complete" if done == total else "interrupted"
        self.store.set_status(status)
        on_event(RunFinished(status, done, total, failed))
        return status

    def _attempt(self, spec: TrialSpec, on_event: EventCallback, control: RunControl) -> Outcome:
        try:
            return self._run_trial(spec, on_event, control)
        except PersonaError as error:
            return error

    def _one_by_one(
        self, queue: Iterator[tuple[int, TrialSpec]], on_event: EventCallback, control: RunControl
    ) -> Iterator[tuple[TrialSpec, Outcome]]:
        # In the calling thread: llama.cpp's OpenMP threads run fastest when one thread
        # drives them (a second driving thread in the process costs ~20%, measured).
        for position, spec in queue:
            control.wait_while_paused()
            if control.cancelled.is_set():
                return
            on_event(TrialStarted(spec, position))
            yield spec, self._attempt(spec, on_event, control)

    def _pooled(
        self,
        queue: Iterator[tuple[int, TrialSpec]],
        on_event: EventCallback,
        control: RunControl,
        parallel: int,
    ) -> Iterator[tuple[TrialSpec, Outcome]]:
        running: dict[Future[Outcome], TrialSpec] = {}
        with ThreadPoolExecutor(parallel, thread_name_prefix="persona-trial") as pool:
            while True:
                while len(running) < parallel and not control.cancelled.is_set():
                    if control.paused:
                        if running:
                            break  # collect what is in flight; start nothing new
                        control.wait_while_paused()
                        continue
                    item = next(queue, None)
                    if item is None:
                        break
                    position, spec = item
                    on_event(TrialStarted(spec, position))
                    running[pool.submit(self._attempt, spec, on_event, control)] = spec
                if not running:
                    return
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield running.pop(future), future.result()

    def _run_trial(
        self, spec: TrialSpec, on_event: EventCallback, control: RunControl
    ) -> tuple[Trial | None, int]:
        probe = self.scenario.probe(spec.probe)
        condition = self.scenario.condition(spec.condition)
        started = _now()
        clock = time.perf_counter()
        answers: list[str] = []
        prompt = ""
        prompt_tokens = completion_tokens = evaluated = 0
        finish_reason = "stop"
        for turn in range(len(probe.turns)):
            messages = conversation(condition, probe.turns[: turn + 1], answers)
            prompt = render_prompt(self.plan.prompt_mode, messages, self.backend)
            request = GenerationRequest(
                prompt,
                spec.seed,
                self.sampling,
                self.plan.stop,
                framing_chars=framing_chars(prompt, probe.turns[turn]),
            )

            def emit(text: str, turn: int = turn) -> None:
                on_event(TextChunk(spec, text, turn))

            result = self.backend.generate(request, emit, control.cancelled)
            if result.finish_reason == "cancelled":
                return None, evaluated
            answers.append(result.text)
            prompt_tokens += result.prompt_tokens
            completion_tokens += result.completion_tokens
            evaluated += result.prompt_tokens_evaluated
            finish_reason = result.finish_reason
        trial = Trial(
            condition=spec.condition,
            probe=spec.probe,
            sample=spec.sample,
            seed=spec.seed,
            prompt=prompt,
            response=answers[-1],
            finish_reason=finish_reason,  # type: ignore[arg-type]
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            started=started,
            seconds=round(time.perf_counter() - clock, 4),
            turn_responses=tuple(answers[:-1]),
        )
        return trial, evaluated
