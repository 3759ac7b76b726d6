"""Plan a scenario into trials, run them on a backend, and record them in a session.

The runner knows nothing of screens: it reports progress as events to a callback that the
CLI (a progress bar) or the TUI (thread-safe message posting) provides, and it can be
paused and cancelled from another thread through a `RunControl`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from persona_tui import __version__
from persona_tui.backends.base import Backend, GenerationRequest
from persona_tui.errors import PersonaError
from persona_tui.prompts import (
    ResolvedMode,
    conversation,
    framing_chars,
    render_prompt,
    resolve_mode,
    stop_strings,
)
from persona_tui.scenario.model import Scenario
from persona_tui.session.model import (
    Plan,
    SessionHeader,
    SessionStatus,
    Trial,
    TrialKey,
    new_session_id,
)
from persona_tui.session.store import SessionStore
from persona_tui.values import SamplingParams


def trial_seed(scenario_seed: int, condition: str, probe: str, sample: int) -> int:
    """A trial's seed, derived from its identity alone.

    Adding or removing conditions, probes or samples never changes another trial's seed.
    The result fits in 31 bits (llama.cpp reserves 0xFFFFFFFF for "random").
    """
    identity = f"{scenario_seed}\x1f{condition}\x1f{probe}\x1f{sample}".encode()
    return int.from_bytes(hashlib.sha256(identity).digest()[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class TrialSpec:
    condition: str
    probe: str
    sample: int
    seed: int

    @property
    def key(self) -> TrialKey:
        return TrialKey(self.condition, self.probe, self.sample)


@dataclass(frozen=True)
class RunOptions:
    """Command-line or UI overrides of a scenario's defaults; None keeps the default."""

    samples: int | None = None
    seed: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    conditions: Sequence[str] | None = None
    probes: Sequence[str] | None = None


def _select(kind: str, wanted: Sequence[str] | None, available: Sequence[str]) -> tuple[str, ...]:
    if not wanted:
        return tuple(available)
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise PersonaError(
            f"unknown {kind} {', '.join(repr(u) for u in unknown)}; "
            f"this scenario has: {', '.join(available)}"
        )
    return tuple(dict.fromkeys(wanted))


def effective_sampling(scenario: Scenario, options: RunOptions) -> SamplingParams:
    params = scenario.sampling.params
    if options.max_tokens is not None:
        if options.max_tokens < 1:
            raise PersonaError("--max-tokens must be at least 1")
        params = replace(params, max_tokens=options.max_tokens)
    if options.temperature is not None:
        if options.temperature < 0:
            raise PersonaError("--temperature must be 0 or more")
        params = replace(params, temperature=options.temperature)
    return params


def make_plan(scenario: Scenario, options: RunOptions, mode: ResolvedMode) -> Plan:
    """What to run: selected conditions and probes, samples per cell, seed and prompt mode."""
    samples = scenario.sampling.samples if options.samples is None else options.samples
    if samples < 1:
        raise PersonaError("--samples must be at least 1")
    seed = scenario.sampling.seed if options.seed is None else options.seed
    if seed < 0:
        raise PersonaError("--seed must be 0 or more")
    return Plan(
        conditions=_select("condition", options.conditions, [c.id for c in scenario.conditions]),
        probes=_select("probe", options.probes, [p.id for p in scenario.probes]),
        samples=samples,
        seed=seed,
        prompt_mode=mode,
        stop=stop_strings(mode),
    )


def plan_trials(plan: Plan) -> list[TrialSpec]:
    """All trials of a plan in identity order (condition, probe, sample)."""
    return [
        TrialSpec(c, p, s, trial_seed(plan.seed, c, p, s))
        for c in plan.conditions
        for p in plan.probes
        for s in range(plan.samples)
    ]


def order_for_prefix_reuse(
    specs: Sequence[TrialSpec], prompts: dict[TrialKey, str]
) -> list[TrialSpec]:
    """Order trials so that neighbours share the longest prompt prefix.

    Sorting prompts lexicographically puts every prompt next to those it shares the most
    leading text with, so one condition's framing and demonstrations are evaluated once
    and then served from the engine's prefix cache for each of its probes.
    """
    return sorted(specs, key=lambda s: (prompts[s.key], s.sample))


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
        probe = self.scenario.probe(spec.probe)
        messages = conversation(self.scenario.condition(spec.condition), probe.turns[:1], [])
        return render_prompt(self.plan.prompt_mode, messages, self.backend)

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
        if parallel > 1 and not getattr(self.backend, "supports_parallel", False):
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


def create_session(
    scenario: Scenario, backend: Backend, options: RunOptions, path: Path | None
) -> SessionStore:
    """Start a new session file for running `scenario` on `backend`."""
    from persona_tui import paths

    mode = resolve_mode(scenario.prompt_mode, backend, scenario.id)
    plan = make_plan(scenario, options, mode)
    now = datetime.now(UTC)
    session_id = new_session_id(scenario.id, now)
    header = SessionHeader(
        id=session_id,
        scenario_id=scenario.id,
        scenario_sha256=scenario.sha256,
        scenario_source=scenario.source,
        scenario_path=scenario.source_path,
        created=now.isoformat(timespec="seconds"),
        status="running",
        model=backend.info,
        sampling=effective_sampling(scenario, options),
        plan=plan,
        app_version=__version__,
        chat_template=backend.chat_template if mode == "chat" else None,
    )
    target = path if path is not None else paths.sessions_dir() / f"{session_id}.toml"
    return SessionStore.create(target, header)


def open_session_for_resume(path: Path) -> tuple[Scenario, SessionStore]:
    """Lock a session for resuming; its scenario is the copy stored in it, as run."""
    from persona_tui.scenario.parse import parse_scenario

    store = SessionStore.open(path)
    header = store.session.header
    try:
        scenario = parse_scenario(header.scenario_source, header.scenario_path)
    except PersonaError:
        store.close()
        raise
    return scenario, store


def resume_session(
    path: Path, load_model: Callable[[str], Backend], model: str | None = None
) -> tuple[Scenario, SessionStore, Backend]:
    """Lock a session to resume it and load its model: the recorded file, or `model`.

    A model whose hash differs from the recorded one is refused. On any failure nothing
    stays locked or loaded. The CLI and the app both resume through here.
    """
    scenario, store = open_session_for_resume(path)
    try:
        backend = load_model(model or store.session.header.model.path)
    except BaseException:
        store.close()
        raise
    try:
        check_same_model(store, backend)
    except BaseException:
        backend.close()
        store.close()
        raise
    return scenario, store, backend


def check_same_model(store: SessionStore, backend: Backend) -> None:
    """Refuse to resume a session on a different model file than it was started with."""
    recorded = store.session.header.model
    loaded = backend.info
    if recorded.sha256 or loaded.sha256:
        same = recorded.sha256 == loaded.sha256
    else:  # a server does not expose its weights' hash: compare what it reports
        same = (recorded.backend, recorded.name) == (loaded.backend, loaded.name)
    if not same:
        raise PersonaError(
            f"session {store.session.header.id} was run with {recorded.path} "
            f"(sha256 {recorded.sha256[:12]}…), but the loaded model {backend.info.path} "
            f"has sha256 {backend.info.sha256[:12]}…; resume it with the same model file"
        )
