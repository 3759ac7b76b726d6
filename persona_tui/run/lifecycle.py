"""A run's door: open a run (new or resumed: model, adapters, plan, session) in one call.

The CLI (`persona-tui run`), `persona-tui study` and the app's Run screen each open a run
with `open_run` and finish it with `run.finish.finish_run`; nothing else loads a model for
a run, checks its adapters or creates its session. `create_session` and `resume_session`
are the two halves `open_run` chooses between (tests and benches call them with a model
already loaded).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from persona_tui import __version__, paths
from persona_tui.backend_names import AUTO
from persona_tui.backends.base import Backend
from persona_tui.errors import PersonaError
from persona_tui.models.config import Config, load_config
from persona_tui.run.adapters import check_adapters_load, check_same_adapters, study_adapters
from persona_tui.run.events import EventCallback, SessionOpened
from persona_tui.run.loading import ModelLoader, load_run_model
from persona_tui.run.plan import RunOptions, make_plan, run_choices, selected_conditions
from persona_tui.run.prompts import resolve_mode
from persona_tui.run.vectors import check_same_vectors, resolve_vectors
from persona_tui.scenario.model import Scenario
from persona_tui.session.as_run import scenario_as_run
from persona_tui.session.model import (
    SessionHeader,
    SteeringRecord,
    TraitRecord,
    new_session_id,
)
from persona_tui.session.store import SessionStore


@dataclass(frozen=True)
class RunRequest:
    """What to run: a new run of `scenario`, or the resumption of the session `resume`."""

    config: Config | None = None  # None: the user's config file
    scenario: Scenario | None = None
    resume: Path | None = None
    # "demo", a config alias, a path or `openai:URL#MODEL`; None: the config's default (a
    # new run) or the file the session recorded (a resume).
    model: str | None = None
    backend: str = AUTO  # or the engine to load the model with
    threads: int | None = None
    repack: str | None = None
    # A new run's plan; a resume takes only `sample` and `score` (its choice to sample and
    # to score, recorded in the session; None keeps the recorded one).
    options: RunOptions = field(default_factory=RunOptions)
    out: Path | None = None  # the new session's file (None: the sessions folder)
    # A training study's adapters by condition (a condition folder or the adapter); the
    # ones not named come from `persona-tui train`'s default folder (run/adapters.py).
    adapters: Mapping[str, Path] = field(default_factory=dict)
    # Training runs per training condition (`--replicates`); None: the scenario's.
    replicates: int | None = None
    # Probe each run's checkpoint at this training step instead of its finished adapter.
    step: int | None = None
    # Folders of trait vectors (`--vectors DIR`), looked in before the scenario's own.
    vectors: tuple[Path, ...] = ()
    # Record the projections on the scenario's traits (`--no-projections` turns it off).
    projections: bool = True


class OpenRun:
    """A run ready to go: its scenario (as run), its locked session and its loaded model.

    Owns both until `close` (or the end of a `with` block); `run.finish.finish_run` may be
    called on it again after a cancel, resuming in place.
    """

    def __init__(self, scenario: Scenario, store: SessionStore, backend: Backend) -> None:
        self.scenario = scenario
        self.store = store
        self.backend = backend

    def close(self) -> None:
        """Release the session's lock and the model (each once)."""
        try:
            self.store.close()
        finally:
            self.backend.close()

    def __enter__(self) -> OpenRun:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def open_run(
    request: RunRequest,
    on_event: EventCallback,
    loader: ModelLoader | None = None,
    cancel: threading.Event | None = None,
) -> OpenRun:
    """Open the run `request` asks for: load the model, then create the session (its plan
    and adapters checked first) or resume it (on the same model and adapters).

    Reports `ModelLoading`, `ModelLoaded` and `SessionOpened`. `loader` replaces the model
    loading (the app's tests use a scripted backend); by default `models.load.load_model`
    with the request's config, backend, threads and repack. A new run of a scenario with
    traits finds (or first extracts, cancellable by `cancel`) their vectors (run/vectors.py).
    Raises PersonaError with what is wrong; on any failure nothing stays loaded or locked.
    """
    if request.resume is not None and request.adapters:
        raise PersonaError("--adapters is for a new run; a resumed session uses its own")
    config = request.config if request.config is not None else load_config()

    def load(ref: str) -> Backend:
        return load_run_model(
            ref,
            config,
            on_event,
            backend=request.backend,
            threads=request.threads,
            repack=request.repack,
            loader=loader,
        )

    if request.resume is not None:
        scenario, store, backend = resume_session(
            request.resume, load, request.model, choices=request.options
        )
    else:
        if request.scenario is None:
            raise PersonaError(
                "name a scenario to run (a file or an id; see `persona-tui scenarios`)"
            )
        scenario = request.scenario
        ref = request.model or config.default_model
        backend = load(ref)
        try:
            traits, steering = resolve_vectors(
                scenario,
                backend,
                request.vectors,
                ref,
                on_event,
                conditions=selected_conditions(scenario, request.options),
                projections=request.projections,
                cancel=cancel,
            )
            store = create_session(
                scenario,
                backend,
                request.options,
                request.out,
                request.adapters,
                replicates=request.replicates,
                step=request.step,
                traits=traits,
                steering=steering,
            )
        except BaseException:
            backend.close()
            raise
    session = store.session
    on_event(SessionOpened(scenario, session.header, session.path, tuple(session.trials)))
    return OpenRun(scenario, store, backend)


def create_session(
    scenario: Scenario,
    backend: Backend,
    options: RunOptions,
    path: Path | None,
    adapters: Mapping[str, Path] | None = None,
    *,
    adapters_folder: Path | None = None,
    replicates: int | None = None,
    step: int | None = None,
    traits: Mapping[str, TraitRecord] | None = None,
    steering: Mapping[str, SteeringRecord] | None = None,
) -> SessionStore:
    """Start a new session file for running `scenario` on `backend`.

    The plan is made once (run/plan.py). A training study's training conditions in it are
    probed with their LoRA adapters: those `adapters` names, the others from
    `adapters_folder` (None: `persona-tui train`'s default folder), each condition's
    `replicates` training runs (None: the scenario's; with `step`, each run's checkpoint
    at that step), found and checked by run/adapters.py and each loaded once here, so a
    bad file fails before anything runs. `traits` and `steering` (run/vectors.py) are
    recorded in the header as they are.
    """
    mode = resolve_mode(scenario.prompt_mode, backend, scenario.id)
    info = backend.info
    found = study_adapters(
        scenario,
        Path(info.path),
        info.sha256,
        adapters,
        selected_conditions(scenario, options),
        adapters_folder,
        backend=info.backend,
        replicates=replicates,
        step=step,
    )
    plan, sampling = make_plan(scenario, options, mode, backend, found)
    by_arm = {a.arm: a for a in found}
    chosen = tuple(by_arm[arm] for arm in plan.arms if arm in by_arm)
    check_adapters_load(backend, chosen)
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
        model=info,
        sampling=sampling,
        plan=plan,
        app_version=__version__,
        chat_template=backend.chat_template if mode == "chat" else None,
        adapters=chosen,
        traits=dict(traits or {}),
        steering=dict(steering or {}),
    )
    target = path if path is not None else paths.sessions_dir() / f"{session_id}.toml"
    return SessionStore.create(target, header)


def open_session(path: Path) -> tuple[Scenario, SessionStore]:
    """Lock a session (to resume or annotate it); its scenario is the copy stored in it,
    as run."""
    store = SessionStore.open(path)
    try:
        scenario = scenario_as_run(store.session)
    except PersonaError:
        store.close()
        raise
    return scenario, store


def resume_session(
    path: Path,
    load: Callable[[str], Backend],
    model: str | None = None,
    *,
    choices: RunOptions | None = None,
) -> tuple[Scenario, SessionStore, Backend]:
    """Lock a session to resume it and load its model: the recorded file, or `model`.

    A model, an adapter or a control vector whose hash differs from the recorded one is
    refused (the recorded adapters are loaded again, from their recorded paths; the
    vectors are checked before anything runs: run/vectors.check_same_vectors). The run
    keeps the session's choice to sample and to score (`[plan]`), but for what `choices` set
    (`--score`, `--no-sample`, ...), which is recorded once all is checked. On any failure
    nothing stays locked or loaded, and the file is unchanged.
    """
    scenario, store = open_session(path)
    try:
        sample, score = run_choices(choices or RunOptions(), store.session.header.plan)
        backend = load(model or store.session.header.model.path)
    except BaseException:
        store.close()
        raise
    try:
        check_same_model(store, backend)
        check_same_adapters(store.session.header)
        check_same_vectors(store.session.header)
        check_adapters_load(backend, store.session.header.adapters)
        plan = store.session.header.plan
        if (sample, score) != (plan.sample, plan.score):
            store.set_choices(sample=sample, score=score)
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
