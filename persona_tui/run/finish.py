"""Finishing a run: the sampling pass, the option pass, and the status the file is left in.

`finish_run` is the one call the CLI, `persona-tui study` and the app's Run screen make on
an `OpenRun` (run/lifecycle.py): it samples the trials still to do (run/runner.py), then
scores the answer options still to do (run/options.py), then measures the trait
projections still to do (run/projections.py), reporting all three through the same events
(run/events.py), and leaves the session `complete`, or `interrupted` with what is
left to do, so that a resume picks it up. Called again after a cancel, it resumes in place.
What it does is what the session records (`[plan]`'s `sample` and `score`, chosen when the
run was opened), so the CLI, the study and the app cannot disagree; a pass the session
chose not to run is not left to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from persona_tui.errors import PersonaError
from persona_tui.run.events import (
    EventCallback,
    OptionsFinished,
    OptionsStarted,
    RunEvent,
    RunFinished,
)
from persona_tui.run.lifecycle import OpenRun
from persona_tui.run.options import (
    OPTIONS_UNSUPPORTED,
    can_score_options,
    option_cells,
    score_options,
)
from persona_tui.run.projections import measure_projections, pending_units
from persona_tui.run.runner import RunControl, Runner
from persona_tui.session.model import SessionStatus


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: "complete" when all the session chose to do is done, whether it was
    cancelled, and how many trials failed in this call (each reported as `TrialFailed`)."""

    status: SessionStatus
    cancelled: bool
    failed: int


def finish_run(
    run: OpenRun,
    on_event: EventCallback,
    control: RunControl | None = None,
    *,
    parallel: int = 1,
) -> RunOutcome:
    """Sample the unfinished trials, then score the unscored answer options (unless the
    scenario has none), in the calling thread, each if the session records that the run
    does it (`[plan]`); the session is saved as each trial and cell finishes.

    To change what the session does, open the run with `RunOptions.sample`/`score`
    (run/plan.run_choices never leaves both off). A backend that cannot score options is
    reported (`OptionsFinished` with a note) and sampling goes on; without sampling that
    is an error, since nothing would be done. The options are scored unless the run was
    cancelled; a failure of the option pass leaves the session `interrupted` (resumable)
    and raises.
    """
    control = control or RunControl()
    store, backend = run.store, run.backend
    plan = store.session.header.plan
    sample = plan.sample
    score = plan.score and bool(option_cells(run.scenario, plan))
    if score and not can_score_options(backend):
        if not sample:
            raise PersonaError(OPTIONS_UNSUPPORTED)
        on_event(OptionsFinished(None, f"options not scored: {OPTIONS_UNSUPPORTED}"))
        score = False
    status: SessionStatus = "complete"
    failed = 0
    if sample:
        counter = _FailureCounter(on_event)
        more = score or bool(store.session.header.traits)  # passes after sampling
        status = Runner(run.scenario, backend, store).run(
            counter, control, parallel=parallel, last_pass=not more
        )
        failed = counter.failed
    if score and not control.cancelled.is_set():
        scored_all = _score(run, on_event, control)
        if not scored_all:
            status = "interrupted"
    measure = store.session.header.traits and not control.cancelled.is_set()
    if measure and not _project(run, on_event, control):
        status = "interrupted"
    cancelled = control.cancelled.is_set()
    saved = status
    if status == "complete" or cancelled:
        saved = "interrupted" if _left_to_do(run) else status
    if saved != store.session.header.status:
        store.set_status(saved)
    return RunOutcome(status, cancelled, failed)


def _left_to_do(run: OpenRun) -> bool:
    """Whether the session still lacks a trial, an option cell or a projection it chose
    to have (a backend that cannot score options leaves no cell to do)."""
    session = run.store.session
    plan = session.header.plan
    if plan.sample and len(session.trials) < plan.total:
        return True
    if session.header.traits and pending_units(run.store):
        return True
    if not plan.score or not can_score_options(run.backend):
        return False
    return len(session.option_cells) < len(option_cells(run.scenario, plan))


def _score(run: OpenRun, on_event: EventCallback, control: RunControl) -> bool:
    """The option pass; True when every cell is scored."""
    store = run.store
    total = len(option_cells(run.scenario, store.session.header.plan))
    on_event(OptionsStarted(len(store.session.option_cells), total))

    try:
        summary = score_options(run.scenario, run.backend, store, on_event, control.cancelled)
    except PersonaError as error:
        on_event(OptionsFinished(None, f"option pass failed: {error}", failed=True))
        if store.session.header.status != "interrupted":
            store.set_status("interrupted")
        raise
    on_event(OptionsFinished(summary))
    return summary.complete


def _project(run: OpenRun, on_event: EventCallback, control: RunControl) -> bool:
    """The projection pass; True when every trial and cell has its projections. A
    failure leaves the session `interrupted` (resumable) and raises."""
    store = run.store
    try:
        return measure_projections(run.scenario, run.backend, store, on_event, control.cancelled)
    except PersonaError:
        if store.session.header.status != "interrupted":
            store.set_status("interrupted")
        raise


class _FailureCounter:
    """Passes the runner's events on, keeping the failed trials `RunFinished` counts."""

    def __init__(self, on_event: EventCallback) -> None:
        self.on_event = on_event
        self.failed = 0

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, RunFinished):
            self.failed = event.failed
        self.on_event(event)
