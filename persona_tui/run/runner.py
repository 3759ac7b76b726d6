"""Run the trials of a plan on a backend and record them in a session.

The runner knows nothing of screens: it reports progress as events to a callback that the
CLI (a progress bar) or the TUI (thread-safe message posting) provides, and it can be
paused and cancelled from another thread through a `RunControl`.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime

from persona_tui.backends.base import (
    Backend,
    BatchedGeneration,
    BatchStarted,
    BatchText,
    GenerationRequest,
    GenerationResult,
    LoraAdapters,
    serves_parallel_requests,
)
from persona_tui.errors import PersonaError
from persona_tui.run.arm_model import ArmModels
from persona_tui.run.events import (
    EventCallback,
    RunFinished,
    RunStarted,
    TextChunk,
    TrialFailed,
    TrialFinished,
    TrialStarted,
)
from persona_tui.run.plan import (
    TrialSpec,
    batch_groups,
    order_for_prefix_reuse,
    plan_trials,
    seed_ids,
)
from persona_tui.run.prompts import conversation, first_turn_prompt, framing_chars, render_prompt
from persona_tui.scenario.model import Scenario
from persona_tui.session.model import Arm, SessionStatus, Trial
from persona_tui.session.store import SessionStore

# What running one trial gives: the trial (None when cancelled) and the prompt tokens the
# engine evaluated, or the user-facing error that stopped it.
Outcome = tuple[Trial | None, int] | PersonaError


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


class Runner:
    """Runs the unfinished trials of a session's plan, saving each one as it finishes."""

    def __init__(self, scenario: Scenario, backend: Backend, store: SessionStore) -> None:
        self.scenario = scenario
        self.backend = backend
        self.store = store
        header = store.session.header
        self.plan = header.plan
        self.sampling = header.sampling
        # arm -> its LoRA adapter file (a training study); the others run without.
        self.adapters = header.adapter_paths()
        # Each arm's adapter and steering, switched only when they change (arm_model.py).
        self.models = ArmModels(backend, header)
        self.seeds_of = seed_ids(scenario)  # a steering sweep's scales share their seeds

    def use_adapter_of(self, arm: Arm) -> None:
        """Put `arm`'s LoRA adapter and steering on the model, if not there already."""
        self.models.use(arm)

    def first_prompt(self, spec: TrialSpec) -> str:
        return first_turn_prompt(
            self.scenario, self.plan.prompt_mode, self.backend, spec.condition, spec.probe
        )

    def pending(self) -> list[TrialSpec]:
        """Unfinished trials, in prefix-reuse order (grouped by adapter first)."""
        finished = {t.key for t in self.store.session.trials}
        specs = [s for s in plan_trials(self.plan, self.seeds_of) if s.key not in finished]
        prompts = {s.key: self.first_prompt(s) for s in specs}
        return order_for_prefix_reuse(specs, prompts, self.models.keys(s.arm for s in specs))

    def run(
        self,
        on_event: EventCallback,
        control: RunControl | None = None,
        parallel: int = 1,
        *,
        last_pass: bool = True,
    ) -> SessionStatus:
        """Run every unfinished trial; return the session's final status.

        With `last_pass` False (the option or projection pass follows), a finished
        sampling pass leaves the file `running`, not `complete`: a run killed in a later
        pass must not look complete (the caller writes the status when all is done).

        With `parallel` 1 the trials run one by one in the calling thread, or, when the
        plan decodes several together (`plan.batch`), batch by batch: each batch's
        trials stream at once and each is saved as its sequence ends. More than one
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
        batched = self.plan.batch > 1
        if batched and not isinstance(self.backend, BatchedGeneration):
            raise PersonaError(
                f"this session decodes {self.plan.batch} sequences together (batch = "
                f"{self.plan.batch}), which {self.backend.info.backend} cannot do; resume it "
                "with llama.cpp and the model it was run with"
            )
        if batched and parallel > 1:
            raise PersonaError("--parallel and a batch of more than 1 cannot be combined")
        if self.adapters and not isinstance(self.backend, LoraAdapters):
            raise PersonaError(
                f"this session probes LoRA adapters, which {self.backend.info.backend} cannot "
                "apply; resume it with the backend and the model it was run with"
            )
        total = self.plan.total
        done = len(self.store.session.trials)
        failed = 0
        self.store.set_status("running")
        on_event(RunStarted(total=total, done=done))
        if batched:
            outcomes = self._batched(on_event, control)
        elif parallel == 1:
            outcomes = self._one_by_one(enumerate(self.pending()), on_event, control)
        else:
            outcomes = self._pooled(enumerate(self.pending()), on_event, control, parallel)
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
        if status != "complete" or last_pass:
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

    def pending_batches(self) -> list[tuple[tuple[TrialSpec, ...], tuple[TrialSpec, ...]]]:
        """(batch, its unfinished trials) of every batch with one left, in prefix-reuse order.

        A batch is always decoded whole, finished trials too (their results are not saved
        again), because a sequence's numbers depend on the batch it shares.
        """
        finished = {t.key for t in self.store.session.trials}
        groups = batch_groups(self.plan, self.seeds_of)
        groups = [g for g in groups if any(s.key not in finished for s in g)]
        firsts = [g[0] for g in groups]
        prompts = {spec.key: self.first_prompt(spec) for spec in firsts}
        ordered = order_for_prefix_reuse(firsts, prompts, self.models.keys(s.arm for s in firsts))
        order = {spec.key: i for i, spec in enumerate(ordered)}
        groups.sort(key=lambda g: order[g[0].key])
        return [(g, tuple(s for s in g if s.key not in finished)) for g in groups]

    def _batched(
        self, on_event: EventCallback, control: RunControl
    ) -> Iterator[tuple[TrialSpec, Outcome]]:
        positions = itertools.count()
        for group, wanted in self.pending_batches():
            control.wait_while_paused()
            if control.cancelled.is_set():
                return
            reported: set[int] = set()
            try:
                for index, outcome in self._run_batch(group, wanted, on_event, control, positions):
                    reported.add(index)
                    yield group[index], outcome
            except PersonaError as error:
                for index, spec in enumerate(group):
                    if spec in wanted and index not in reported:
                        yield spec, error

    def _run_batch(
        self,
        group: Sequence[TrialSpec],
        wanted: Sequence[TrialSpec],
        on_event: EventCallback,
        control: RunControl,
        positions: Iterator[int],
    ) -> Iterator[tuple[int, Outcome]]:
        """Decode a group's trials, `plan.batch` at a time, turn by turn; (index, outcome)
        of each wanted trial as its sequence ends in its last turn.

        A pause takes effect when a trial ends: the decoding waits there, mid-group, so
        the group's composition (and its texts) stay those of an unpaused run.
        """
        assert isinstance(self.backend, BatchedGeneration)
        self.use_adapter_of(group[0].arm)
        condition = self.scenario.condition(group[0].condition)
        probes = [self.scenario.probe(spec.probe) for spec in group]
        started = [""] * len(group)
        answers: list[list[str]] = [[] for _ in group]
        results: list[list[GenerationResult]] = [[] for _ in group]
        prompts = [""] * len(group)
        wanted_keys = {spec.key for spec in wanted}
        for turn in range(max(len(probe.turns) for probe in probes)):
            members = [i for i, probe in enumerate(probes) if turn < len(probe.turns)]
            requests = []
            for index in members:
                spec, probe = group[index], probes[index]
                messages = conversation(condition, probe.turns[: turn + 1], answers[index])
                prompts[index] = render_prompt(self.plan.prompt_mode, messages, self.backend)
                requests.append(
                    GenerationRequest(
                        prompts[index],
                        spec.seed,
                        self.sampling,
                        self.plan.stop,
                        framing_chars=framing_chars(prompts[index], probe.turns[turn]),
                    )
                )
            events = self.backend.generate_batch(requests, control.cancelled, self.plan.batch)
            with contextlib.closing(events):
                for event in events:
                    index = members[event.index]
                    spec = group[index]
                    mine = spec.key in wanted_keys
                    if isinstance(event, BatchStarted):
                        if turn == 0:
                            started[index] = _now()
                            if mine:
                                on_event(TrialStarted(spec, next(positions)))
                        continue
                    if isinstance(event, BatchText):
                        if mine:
                            on_event(TextChunk(spec, event.text, turn))
                        continue
                    result = event.result
                    answers[index].append(result.text)
                    results[index].append(result)
                    last = turn == len(probes[index].turns) - 1
                    if mine and (last or result.finish_reason == "cancelled"):
                        evaluated = sum(r.prompt_tokens_evaluated for r in results[index])
                        if result.finish_reason == "cancelled":
                            yield index, (None, evaluated)
                        else:
                            trial = _trial(spec, prompts[index], results[index], started[index])
                            yield index, (trial, evaluated)
                        control.wait_while_paused()
            if control.cancelled.is_set():
                return

    def _run_trial(
        self, spec: TrialSpec, on_event: EventCallback, control: RunControl
    ) -> tuple[Trial | None, int]:
        self.use_adapter_of(spec.arm)
        probe = self.scenario.probe(spec.probe)
        condition = self.scenario.condition(spec.condition)
        started = _now()
        answers: list[str] = []
        results: list[GenerationResult] = []
        prompt = ""
        evaluated = 0
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
            evaluated += result.prompt_tokens_evaluated
            if result.finish_reason == "cancelled":
                return None, evaluated
            answers.append(result.text)
            results.append(result)
        trial = _trial(spec, prompt, results, started)
        return trial, evaluated


def _trial(
    spec: TrialSpec, prompt: str, results: Sequence[GenerationResult], started: str
) -> Trial:
    """The record of a trial whose turns gave `results` (the last turn's prompt as sent)."""
    return Trial(
        condition=spec.condition,
        probe=spec.probe,
        sample=spec.sample,
        seed=spec.seed,
        prompt=prompt,
        response=results[-1].text,
        finish_reason=results[-1].finish_reason,
        prompt_tokens=sum(r.prompt_tokens for r in results),
        completion_tokens=sum(r.completion_tokens for r in results),
        started=started,
        seconds=round(sum(r.seconds for r in results), 4),
        turn_responses=tuple(r.text for r in results[:-1]),
        replicate=spec.replicate,
    )
