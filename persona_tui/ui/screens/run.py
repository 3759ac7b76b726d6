"""The Run screen: load a model, run a scenario, stream every condition side by side.

The worker opens the run and finishes it with the core's two calls (`run.lifecycle.open_run`,
`run.finish.finish_run`: loading, the session, sampling, then the option pass) in one thread;
their events reach this screen as messages (see `run_bridge`), and it updates the widgets.
The screen owns the open run (model and session) while it is open, so a cancelled run can
be resumed in place.

The keys follow the run's `phase`: while the option pass scores, Results, Annotate and
Compare open on what is done on top of this screen, whose worker goes on (the store is
thread-safe: an annotation is saved at once whatever becomes of the pass); Results follows
the pass through `cells_saved`. The footer and the palette offer the keys that work now.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.signal import Signal
from textual.timer import Timer
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerCancelled, WorkerFailed, WorkerState

from persona_tui.errors import PersonaError
from persona_tui.models.config import Config
from persona_tui.run.events import (
    ModelLoaded,
    OptionsFinished,
    OptionsProgress,
    OptionsStarted,
    ProjectionsSkipped,
    RunFinished,
    RunStarted,
    SessionOpened,
    TrialFailed,
    TrialFinished,
    TrialStarted,
)
from persona_tui.run.finish import finish_run
from persona_tui.run.lifecycle import OpenRun, RunRequest, open_run
from persona_tui.run.loading import ModelLoader
from persona_tui.run.runner import RunControl
from persona_tui.scenario.model import Scenario
from persona_tui.session.model import Arm, TrialKey
from persona_tui.session.store import SessionStore
from persona_tui.ui.app_base import PersonaAppBase
from persona_tui.ui.eta import MIN_DONE
from persona_tui.ui.options_pass import OptionsPassFinished, OptionsPassPanel, PassState
from persona_tui.ui.run_bridge import RunBridge, RunEventMessage, TextBatch
from persona_tui.ui.run_status import run_status
from persona_tui.ui.text import inert
from persona_tui.ui.widgets.condition_column import ConditionColumn, restore_columns
from persona_tui.ui.widgets.run_header import RunHeader
from persona_tui.ui.widgets.side_by_side import SideBySide

__all__ = ["RunRequest", "RunScreen"]

OPTIONS_FLUSH = 0.1  # seconds: how often the option pass's held-back progress is posted

Phase = Literal["opening", "sampling", "options", "stopped"]


@dataclass
class RunFailed(Message):
    """Loading, session creation or the run itself failed with a user-facing message."""

    error: str


class RunScreen(Screen[None]):
    """Side-by-side streaming of a scenario's conditions, with pause, cancel and resume."""

    app = getters.app(PersonaAppBase)
    CSS_PATH = "run.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_pause", "Pause/Resume"),
        Binding("c", "cancel_run", "Cancel"),
        Binding("r", "resume_run", "Resume"),
        Binding("a", "annotate", "Annotate"),
        Binding("o", "compare", "Compare"),
        Binding("v", "results", "Results"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self, request: RunRequest, config: Config, loader: ModelLoader | None = None
    ) -> None:
        super().__init__()
        self.request = request
        self.config = config
        self.loader = loader
        self.control = RunControl()
        self.opened: OpenRun | None = None  # the run, once open (kept to resume in place)
        self.scenario: Scenario | None = request.scenario
        self.running = False
        self.phase: Phase = "opening"
        self.finished_status = ""
        self.plan_batch = 1  # trials decoded at once: the sampling estimate waits for them
        self.cells_saved: Signal[PassState] = Signal(self, "cells-saved")
        self._worker: Worker[None] | None = None
        self._bridge: RunBridge | None = None  # the running worker's
        self._flush_timer: Timer | None = None
        self._closing = False
        self._worker_active = False
        self._lifecycle = threading.Lock()
        self._columns: dict[Arm, ConditionColumn] = {}
        self._in_flight: set[TrialKey] = set()
        self._active_column: ConditionColumn | None = None  # where the run works now
        self._mark = 0.0  # when generating time was last counted

    # Layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        title = self.scenario.title if self.scenario else f"resume {self.request.resume}"
        yield RunHeader(title, clock=self.app_clock)
        yield OptionsPassPanel(clock=self.app_clock)
        yield Static("", id="run-message")
        yield SideBySide(id="columns")
        yield Footer(compact=True)

    def app_clock(self) -> float:
        return self.app.clock()

    def on_mount(self) -> None:
        self.query_one("#columns").display = False
        self.set_interval(1.0, self._tick)
        self.start_worker()

    def _tick(self) -> None:
        """Once a second: the clocks of the header and of the option pass."""
        self.query_one(RunHeader).refresh_figures()
        self.query_one(OptionsPassPanel).refresh_figures()

    def _set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.refresh_bindings()  # the footer and the palette offer the keys of the phase
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        if phase == "options" and self._bridge is not None:
            # A cell's progress held back by the bridge (it came soon after the previous)
            # goes out within 0.1 s, not with the next cell (a slow one, an adapter's load).
            # Not while sampling: the text's own interval is tuned (run_bridge).
            self._flush_timer = self.set_interval(OPTIONS_FLUSH, self._bridge.flush)

    # The worker ---------------------------------------------------------------------

    def start_worker(self) -> None:
        self.running = True
        self.finished_status = ""
        self._set_phase("opening")
        self._worker_active = True
        self._bridge = RunBridge(self.post_message)
        self._worker = self._run_in_thread(self.control, self._bridge)

    @property
    def store(self) -> SessionStore | None:
        """The session being run, once open."""
        return self.opened.store if self.opened is not None else None

    @work(thread=True, exclusive=True, exit_on_error=False, group="run")
    def _run_in_thread(self, control: RunControl, bridge: RunBridge) -> None:
        try:
            if self.opened is None:
                request = self.request
                if request.config is None:
                    request = replace(request, config=self.config)
                self.opened = open_run(request, bridge, self.loader, control.cancelled)
            finish_run(self.opened, bridge, control)
        except PersonaError as error:
            bridge.flush()
            self.post_message(RunFailed(str(error)))
        finally:
            with self._lifecycle:
                self._worker_active = False
                if self._closing:  # the screen went away while this ran: release here
                    self._release()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self._worker:
            return
        if event.state == WorkerState.ERROR:
            self._show_error(f"unexpected error: {event.worker.error!r}")
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.running = False
            self._set_phase("stopped")

    # Messages from the worker ---------------------------------------------------------

    @on(OptionsPassFinished)
    def _options_finished(self, message: OptionsPassFinished) -> None:
        header = self.query_one(RunHeader)
        if not message.complete:
            self.finished_status = "interrupted"
            header.set_state("options cancelled · r resumes")
        elif message.event.summary is not None:
            header.set_state("complete")
        self.refresh_bindings()

    def _options_event(self, event: OptionsStarted | OptionsProgress | OptionsFinished) -> None:
        panel = self.query_one(OptionsPassPanel)
        panel.show(event)
        if isinstance(event, OptionsStarted):
            self.query_one(RunHeader).set_state("scoring answer options")
            self._set_phase("options")
        self.cells_saved.publish(panel.pass_state)

    def _model_loaded(self, event: ModelLoaded) -> None:
        header = self.query_one(RunHeader)
        header.model_name = event.info.name
        header.set_state("preparing session")

    async def _session_opened(self, event: SessionOpened) -> None:
        self.scenario = event.scenario
        self.query_one("#run-message", Static).display = False
        columns = self.query_one("#columns", SideBySide)
        columns.display = True
        if not columns.children:
            plan = event.header.plan
            per_column = len(plan.probes) * plan.samples
            # One column per arm: a replicated study's condition once per training run.
            # Awaited, so the columns exist before the next message (a trial start) arrives.
            await columns.mount_all(
                ConditionColumn(
                    event.scenario, event.scenario.condition(c), per_column, plan.batch, r
                )
                for c, r in plan.arms
            )
            columns.fit()
            self._columns = {
                Arm(c.condition.id, c.replicate): c for c in columns.query(ConditionColumn)
            }
            restore_columns(self._columns, event.finished)
        self.plan_batch = event.header.plan.batch
        header = self.query_one(RunHeader)
        header.model_name = event.header.model.name
        header.set_state("paused" if self.control.paused else "running")
        self.refresh_bindings()  # the run is open: it can be paused and cancelled

    @on(RunFailed)
    def _run_failed(self, message: RunFailed) -> None:
        self._show_error(message.error)

    def _show_error(self, error: str) -> None:
        self.query_one(RunHeader).set_state("error")
        text = Text("Could not run\n\n", style="bold")
        text.append_text(inert(error))
        text.append("\n\nescape: back")
        panel = self.query_one("#run-message", Static)
        panel.update(text)
        panel.add_class("-error")
        panel.display = True
        self.notify(inert(error).plain, title="Run failed", severity="error", timeout=10)

    @on(TextBatch)
    def _text_batch(self, message: TextBatch) -> None:
        for part in message.parts:
            spec = part.spec
            column = self._columns.get(spec.arm)
            if column is not None:
                column.append_text(spec.probe, spec.sample, part.turn, part.text)

    @on(RunEventMessage)
    async def _run_event(self, message: RunEventMessage) -> None:
        event = message.event
        status = run_status(event)
        if status is not None:
            self.query_one(RunHeader).set_state(status[0])
            self.query_one("#run-message", Static).update(status[1])
            return
        if isinstance(event, ModelLoaded):
            self._model_loaded(event)
            return
        if isinstance(event, SessionOpened):
            await self._session_opened(event)
            return
        if isinstance(event, OptionsStarted | OptionsProgress | OptionsFinished):
            self._options_event(event)
            return
        if isinstance(event, ProjectionsSkipped):
            self.notify(event.note, title="Trait projections", severity="warning")
            return
        header = self.query_one(RunHeader)
        stats = header.stats
        now = self.app_clock()
        if isinstance(event, RunStarted):
            stats.start(now, event.done, event.total, max(MIN_DONE, self.plan_batch))
            header.set_state("paused" if self.control.paused else "running")
            self._set_phase("sampling")
        elif isinstance(event, TrialStarted):
            self._trial_started(event.spec.key, now)
            column = self._columns.get(event.spec.arm)
            if column is not None:
                column.start_trial(event.spec.probe, event.spec.sample)
                self._mark_active(column)
        elif isinstance(event, TrialFinished):
            trial = event.trial
            stats.finished(now, event.done)
            stats.tokens += trial.completion_tokens
            self._trial_ended(trial.key, now)
            column = self._columns.get(trial.arm)
            if column is not None:
                column.finish_trial(trial.probe, trial.sample, trial.response, trial.finish_reason)
            if self.control.paused:
                header.state = "paused"
            header.refresh_figures()
        elif isinstance(event, TrialFailed):
            self._trial_ended(event.spec.key, now)
            column = self._columns.get(event.spec.arm)
            if column is not None:
                column.fail_trial(event.spec.probe, event.spec.sample, event.error)
            self.notify(inert(event.error).plain, title="Trial failed", severity="warning")
        elif isinstance(event, RunFinished):
            self._in_flight.clear()  # cancelled trials: neither their time nor tokens count
            stats.stop(now)
            self.finished_status = event.status
            state = "complete" if event.status == "complete" else "cancelled · r resumes"
            if event.failed:
                state += f" · {event.failed} failed"
            header.set_state(state)
            for column in self._columns.values():
                column.stop("cancelled")  # trials still in flight were cancelled
            self._active_column = None

    def _mark_active(self, column: ConditionColumn) -> None:
        """Mark the column the run works in, and scroll to it, when the run moves there.

        The mark stays between the column's trials: toggling it per trial would restyle
        the column twice a trial, and every restyle costs the UI thread (taken from
        generation on two cores).
        """
        if column is self._active_column:
            return
        for other in self._columns.values():
            if other is not column and other.in_flight == 0:
                other.remove_class("-active")
        self._active_column = column
        self.query_one("#columns").scroll_to_widget(column, animate=False)

    def _account(self, now: float) -> None:
        """Count the time since the last trial event as generating if a trial was in flight.

        Trials decoded together overlap in time: summing each one's duration would divide
        the tokens/s by the number of sequences decoded at once.
        """
        if self._in_flight:
            self.query_one(RunHeader).stats.generating_seconds += max(now - self._mark, 0.0)
        self._mark = now

    def _trial_started(self, key: TrialKey, now: float) -> None:
        self._account(now)
        self._in_flight.add(key)

    def _trial_ended(self, key: TrialKey, now: float) -> None:
        self._account(now)
        self._in_flight.discard(key)

    # Actions --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The keys of the phase: pause while sampling (the option pass does not pause),
        cancel while running, resume when stopped short, and the session's screens when
        the run is stopped or only scoring options (its trials are all sampled then)."""
        store = self.store
        if action == "toggle_pause":
            return self.running and store is not None and self.phase == "sampling"
        if action == "cancel_run":
            return self.running and store is not None
        if action == "resume_run":
            stopped = not self.running and store is not None
            return stopped and self.finished_status != "complete"
        if action in ("annotate", "compare", "results"):
            if store is None or (self.running and self.phase != "options"):
                return False
            # Trials counted from the events: the store's lock may be held by a save.
            return self.query_one(RunHeader).stats.done > 0
        return True

    def action_toggle_pause(self) -> None:
        header = self.query_one(RunHeader)
        if self.control.paused:
            self.control.resume()
            header.set_state("running")
        else:
            self.control.pause()
            header.set_state("pausing after this trial…")

    def action_cancel_run(self) -> None:
        self.control.cancel()
        self.query_one(RunHeader).set_state("cancelling…")

    def action_resume_run(self) -> None:
        self.control = RunControl()
        self.query_one("#run-message", Static).display = False
        self.start_worker()

    def action_annotate(self) -> None:
        from persona_tui.ui.screens.annotate import AnnotateScreen

        if self.store is not None and self.scenario is not None:
            self.app.push_screen(AnnotateScreen(self.store, self.scenario, self.config))

    def action_compare(self) -> None:
        from persona_tui.ui.screens.compare import CompareScreen

        if self.store is not None and self.scenario is not None:
            self.app.push_screen(CompareScreen(self.store.session, self.scenario))

    def action_results(self) -> None:
        from persona_tui.ui.screens.results import ResultsScreen

        if self.store is not None:
            # While the pass scores, Results follows it (refreshed as cells are saved).
            scoring = self.running and self.phase == "options"
            panel = self.query_one(OptionsPassPanel)
            live = (self.cells_saved, panel.pass_state) if scoring else None
            self.app.push_screen(ResultsScreen([self.store.path], live=live))

    async def action_back(self) -> None:
        await self.shutdown()
        self.dismiss()

    async def shutdown(self) -> None:
        """Cancel a run in progress, wait for it to save, and release the model and session."""
        self.control.cancel()
        worker = self._worker
        if worker is not None and worker.state in (WorkerState.PENDING, WorkerState.RUNNING):
            with contextlib.suppress(WorkerFailed, WorkerCancelled):
                await worker.wait()  # returns once the runner has saved its state
        self._release()

    def on_unmount(self) -> None:
        """Removed without `shutdown` (e.g. the app exits): cancel; release when idle."""
        self.control.cancel()
        with self._lifecycle:
            self._closing = True
            if not self._worker_active:
                self._release()

    def _release(self) -> None:
        opened, self.opened = self.opened, None
        if opened is not None:
            opened.close()
