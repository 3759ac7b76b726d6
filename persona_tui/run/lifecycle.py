"""A session's life: creating it for a run, and resuming it on the model it was run with.

The CLI and the app both start and resume sessions through here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from persona_tui import __version__, paths
from persona_tui._util.hashing import sha256_file
from persona_tui.backends.adapter_files import adapter_config, adapter_weights
from persona_tui.backends.base import Backend, BatchedGeneration, LoraAdapters
from persona_tui.errors import PersonaError
from persona_tui.run.plan import RunOptions, effective_sampling, group_cells, make_plan
from persona_tui.run.prompts import resolve_mode
from persona_tui.run.runner import first_turn_prompt
from persona_tui.scenario.model import Scenario
from persona_tui.session.as_run import scenario_as_run
from persona_tui.session.model import AdapterRecord, Plan, SessionHeader, new_session_id
from persona_tui.session.store import SessionStore


def create_session(
    scenario: Scenario,
    backend: Backend,
    options: RunOptions,
    path: Path | None,
    adapters: Sequence[AdapterRecord] = (),
) -> SessionStore:
    """Start a new session file for running `scenario` on `backend`.

    A training study's training conditions each need their LoRA adapter in `adapters`
    (training/adapters.py finds them); adapters of conditions the plan leaves out are
    dropped. Each adapter is loaded once here, so a bad file fails before anything runs.
    """
    mode = resolve_mode(scenario.prompt_mode, backend, scenario.id)
    max_batch = backend.max_batch if isinstance(backend, BatchedGeneration) else 1
    plan = make_plan(scenario, options, mode, max_batch)
    chosen = _plan_adapters(scenario, plan, adapters)
    check_adapters_load(backend, chosen)
    if plan.batch > 1:
        batch = _batch_in_context(scenario, plan, backend, options)
        cells = group_cells(batch, plan.samples, len(plan.probes))
        plan = replace(plan, batch=batch, batch_cells=cells)
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
        adapters=chosen,
    )
    target = path if path is not None else paths.sessions_dir() / f"{session_id}.toml"
    return SessionStore.create(target, header)


def _plan_adapters(
    scenario: Scenario, plan: Plan, adapters: Sequence[AdapterRecord]
) -> tuple[AdapterRecord, ...]:
    """The adapters of the plan's training conditions, in plan order; every one needed."""
    training = {c.id for c in scenario.training_conditions}
    given = {a.condition: a for a in adapters}
    if given and scenario.training is None:
        raise PersonaError(
            f"scenario {scenario.id!r} is not a training study (it has no [training] table), "
            "so it has no adapters to probe; drop --adapters"
        )
    strays = [name for name in given if name not in training]
    if strays:
        raise PersonaError(
            f"adapters for {', '.join(map(repr, strays))}: not training conditions of "
            f"{scenario.id!r} (those are: {', '.join(sorted(training))})"
        )
    missing = [c for c in plan.conditions if c in training and c not in given]
    if missing:
        raise PersonaError(
            f"scenario {scenario.id!r} is a training study: its condition(s) "
            f"{', '.join(missing)} are probed with their LoRA adapters, and none was given; "
            f"train them first (persona-tui train {scenario.id} --model MODEL) or name them "
            "with --adapters CONDITION=DIR"
        )
    return tuple(given[c] for c in plan.conditions if c in given)


def check_adapters_load(backend: Backend, adapters: Sequence[AdapterRecord]) -> None:
    """Load each adapter once (a bad file raises ModelLoadError now, not mid-run), then
    leave the model without one."""
    if not adapters:
        return
    if not isinstance(backend, LoraAdapters):
        raise PersonaError(
            f"this session probes LoRA adapters, which the {backend.info.backend} backend "
            "cannot apply; run it with the engine they were trained for (llama.cpp on the "
            "GGUF, or MLX on the MLX model folder)"
        )
    try:
        for adapter in adapters:
            backend.use_adapter(adapter.path)
    finally:
        backend.use_adapter(None)


def check_same_adapters(store: SessionStore) -> None:
    """Refuse to resume a session whose adapter files (the weights, and an mlx-lm folder's
    config) are gone or changed since it ran."""
    for adapter in store.session.header.adapters:
        folder = Path(adapter.path)
        files = [(adapter_weights(folder), adapter.sha256)]  # a GGUF, or an MLX folder's
        config = adapter_config(folder)
        if config is not None and adapter.config_sha256:
            files.append((config, adapter.config_sha256))
        for path, recorded in files:
            if not path.is_file():
                raise PersonaError(
                    f"session {store.session.header.id} probes condition "
                    f"{adapter.condition!r} with the LoRA adapter {path}, which is gone; put "
                    "it back to resume"
                )
            found = sha256_file(path)
            if found != recorded:
                raise PersonaError(
                    f"the LoRA adapter of condition {adapter.condition!r}, {path}, has "
                    f"changed since session {store.session.header.id} ran (sha256 "
                    f"{found[:12]}…, recorded {recorded[:12]}…): its trials would come from "
                    "other weights; restore the adapter, or start a new session"
                )


# Tokens a later turn of a multi-turn probe adds besides its text (role names, template).
TURN_OVERHEAD = 16


def _batch_in_context(scenario: Scenario, plan: Plan, backend: Backend, options: RunOptions) -> int:
    """`plan.batch`, or fewer when that many sequences would not fit the model's context
    (a cell's prompt once, then per sequence its probe's text, every turn's max_tokens
    and the later turns' text: a group's cells share their framing, not their probes).
    A batch asked for with --batch that does not fit is an error, named before anything
    runs."""
    n_ctx = backend.info.context_length
    if n_ctx <= 0:  # the context is unknown: nothing to size by
        return plan.batch
    max_tokens = effective_sampling(scenario, options).max_tokens
    fits = plan.batch
    for condition in plan.conditions:
        for probe_id in plan.probes:
            probe = scenario.probe(probe_id)
            shared = backend.count_tokens(
                first_turn_prompt(scenario, plan.prompt_mode, backend, condition, probe_id)
            )
            text = [backend.count_tokens(turn) + TURN_OVERHEAD for turn in probe.turns]
            own = len(probe.turns) * max_tokens + sum(text)
            fits = min(fits, max(1, (n_ctx - shared - text[0]) // own))
    if options.batch is not None and fits < options.batch:
        raise PersonaError(
            f"--batch {options.batch} does not fit the model's context of {n_ctx} tokens with "
            f"max_tokens {max_tokens}: at most {fits} sequences of the longest cell fit; use "
            "--batch with fewer, lower max_tokens, or give the model a larger context (n_ctx)"
        )
    return fits


def open_session_for_resume(path: Path) -> tuple[Scenario, SessionStore]:
    """Lock a session for resuming; its scenario is the copy stored in it, as run."""
    store = SessionStore.open(path)
    try:
        scenario = scenario_as_run(store.session)
    except PersonaError:
        store.close()
        raise
    return scenario, store


def resume_session(
    path: Path, load_model: Callable[[str], Backend], model: str | None = None
) -> tuple[Scenario, SessionStore, Backend]:
    """Lock a session to resume it and load its model: the recorded file, or `model`.

    A model or an adapter whose hash differs from the recorded one is refused (the
    recorded adapters are loaded again, from their recorded paths). On any failure nothing
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
        check_same_adapters(store)
        check_adapters_load(backend, store.session.header.adapters)
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
