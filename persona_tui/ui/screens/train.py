"""The Training screen: fine-tune a training study's adapters with progress and a loss chart.

`train_study` (the same call as `persona-tui train`) runs in one thread worker; its events
come back as messages through `TrainBridge` (steps coalesced, at most 20 messages a second)
and this screen updates one `ConditionTraining` panel per training condition (the replicate
training now, and the condition's bar over all its replicates); the line under the title
says the work and its estimated time before the first run. Cancel stops
after the current step with a checkpoint saved; pressing t again resumes from it (so does
opening the screen again from Home, or `persona-tui train` with the same settings).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerCancelled, WorkerFailed, WorkerState

from persona_tui.errors import PersonaError
from persona_tui.models.config import Config
from persona_tui.run.adapters import default_output
from persona_tui.scenario.model import Condition, Scenario
from persona_tui.training.conditions import StudyResult, replicate_folder
from persona_tui.training.estimate import estimate_after, plan_line
from persona_tui.training.locate import training_model_path
from persona_tui.training.params import (
    CheckpointSaved,
    ConditionFinished,
    ConditionResult,
    HeldoutEvaluated,
    TrainingEvent,
    TrainingParams,
    TrainingPhase,
    TrainingPlan,
    TrainingPlanned,
    TrainingStarted,
)
from persona_tui.training.record import read_loss_curve
from persona_tui.ui.app_base import PersonaAppBase
from persona_tui.ui.text import inert
from persona_tui.ui.train_bridge import TrainBridge, TrainingEventMessage, TrainingSteps
from persona_tui.ui.widgets.training_progress import ConditionTraining

Trainer = Callable[..., StudyResult]
"""`train_study`'s signature: (scenario, model_path, out_dir, params, on_event, cancel,
conditions=..., replicates=...); tests pass a stand-in that feeds a fixed event sequence."""


def run_train_study(
    scenario: Scenario,
    model_path: Path,
    out_dir: Path,
    params: TrainingParams | None,
    on_event: Callable[[TrainingEvent], None],
    cancel: threading.Event,
    *,
    conditions: Sequence[str] | None = None,
    replicates: int | None = None,
) -> StudyResult:
    """The real trainer (imported here, so opening the screen imports no training code)."""
    from persona_tui.training.study import train_study

    return train_study(
        scenario,
        model_path,
        out_dir,
        params,
        on_event,
        cancel,
        conditions=conditions,
        replicates=replicates,
    )


@dataclass(frozen=True)
class TrainRequest:
    """What to train: a training study on a model, into `out` (None: the default folder)."""

    scenario: Scenario
    model: str | None = None  # "demo", a config alias or a GGUF path; None: the config default
    out: Path | None = None
    params: TrainingParams | None = None
    conditions: tuple[str, ...] = ()  # only these training conditions (empty: all)
    replicates: int | None = None  # training runs per condition (None: the scenario's)


@dataclass
class TrainingReady(Message):
    """The model file is found: where the adapters go."""

    model_path: Path
    out: Path


@dataclass
class TrainingDone(Message):
    result: StudyResult


@dataclass
class TrainingFailed(Message):
    """Training stopped with a message a user can act on (a missing extra, bad data …)."""

    error: str


class TrainScreen(Screen[None]):
    """One panel per training condition: progress, loss, held-out loss, tok/s, ETA, chart."""

    app = getters.app(PersonaAppBase)
    CSS_PATH = "train.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "train", "Resume"),
        Binding("c", "cancel_training", "Cancel"),
        Binding("p", "probe", "Probe these adapters"),
        Binding("escape", "cancel_training", "Cancel", show=False),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self, request: TrainRequest, config: Config, trainer: Trainer = run_train_study
    ) -> None:
        super().__init__()
        self.request = request
        self.scenario = request.scenario
        self.config = config
        self.trainer = trainer
        self.cancel = threading.Event()
        self.running = False
        self.status = "starting"  # then: training, complete, interrupted, error
        self.out: Path | None = request.out
        self.model_path: Path | None = None
        self.result: StudyResult | None = None
        self._worker: Worker[None] | None = None
        self._bridge: TrainBridge | None = None
        self.plan: TrainingPlan | None = None
        self.plan_text = ""  # the work and its estimated time (TrainingPlanned)
        self._rate_estimated = False  # no earlier run: estimated after the first steps
        training = self.scenario.training
        self.replicates = request.replicates or (training.replicates if training else 1)

    # Layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="train-bar")
        yield Static("", id="train-phase")
        yield Static("", id="train-message")
        with VerticalScroll(id="train-conditions"):
            for condition in self._conditions():
                yield ConditionTraining(condition, self.replicates)
        yield Footer(compact=True)

    def _conditions(self) -> list[Condition]:
        wanted = set(self.request.conditions)
        return [c for c in self.scenario.training_conditions if not wanted or c.id in wanted]

    def on_mount(self) -> None:
        self.query_one("#train-message").display = False
        self.query_one("#train-conditions").focus()
        # Steps held back by the bridge's coalescing go out within 0.1 s even when the
        # next step is seconds away.
        self.set_interval(0.1, self._flush_steps)
        self.action_train()

    def _flush_steps(self) -> None:
        if self._bridge is not None and self.running:
            self._bridge.flush()

    def _panel(self, condition: str) -> ConditionTraining | None:
        found = self.query(f"#training-{condition}").results(ConditionTraining)
        return next(iter(found), None)

    def _update_bar(self) -> None:
        text = Text("Training ", "bold")
        text.append_text(inert(self.scenario.title or self.scenario.id, "bold"))
        text.append("  model ")
        text.append_text(inert(self.model_path.name if self.model_path else self._model_ref()))
        if self.out is not None:
            text.append("  → ")
            text.append_text(inert(str(self.out)))
        text.append("  · ")
        text.append(self.status, "italic")
        self.query_one("#train-bar", Static).update(text)

    def _model_ref(self) -> str:
        return self.request.model or self.config.default_model

    # The worker ---------------------------------------------------------------------

    def action_train(self) -> None:
        """Start training, or resume it from the checkpoints a cancel left."""
        self.cancel = threading.Event()
        self.running = True
        self.status = "training" if self.result is None else "resuming"
        self.query_one("#train-message").display = False
        self.query_one("#train-phase", Static).update("")
        self._update_bar()
        self.refresh_bindings()
        self._bridge = TrainBridge(self.post_message)
        self._worker = self._train_in_thread(self.cancel, self._bridge)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train")
    def _train_in_thread(self, cancel: threading.Event, bridge: TrainBridge) -> None:
        try:
            model_path = training_model_path(self.request.model, self.config)
            out = self.request.out or default_output(self.scenario.id, model_path)
            self.post_message(TrainingReady(model_path, out))
            result = self.trainer(
                self.scenario,
                model_path,
                out,
                self.request.params,
                bridge,
                cancel,
                conditions=list(self.request.conditions) or None,
                replicates=self.request.replicates,
            )
            bridge.flush()
            self.post_message(TrainingDone(result))
        except PersonaError as error:
            bridge.flush()
            self.post_message(TrainingFailed(str(error)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self._worker:
            return
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self._show_error(f"unexpected error: {type(error).__name__}: {error}")
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.running = False
            self.refresh_bindings()

    # Messages from the worker ---------------------------------------------------------

    @on(TrainingReady)
    def _ready(self, message: TrainingReady) -> None:
        self.model_path, self.out = message.model_path, message.out
        self._update_bar()

    @on(TrainingSteps)
    def _steps(self, message: TrainingSteps) -> None:
        plan = self.plan
        waited = [s for s in message.steps if s.step >= estimate_after(s.total_steps)]
        no_rate = plan is not None and plan.seconds_per_token is None
        if plan is not None and no_rate and waited and not self._rate_estimated:
            # No earlier run to estimate from: the rate of the first steps says.
            self._rate_estimated = True
            self.plan_text = plan_line(plan, waited[0].tokens_per_second)
            self.query_one("#train-phase", Static).update(inert(self.plan_text))
        panel = self._panel(message.latest.condition)
        if panel is not None:
            panel.steps(message.steps)

    @on(TrainingEventMessage)
    def _event(self, message: TrainingEventMessage) -> None:
        event = message.event
        if isinstance(event, TrainingPlanned):
            self.plan = event.plan
            self.plan_text = plan_line(event.plan)
            self.query_one("#train-phase", Static).update(inert(self.plan_text))
            return
        if isinstance(event, TrainingPhase):
            run = f" replicate {event.replicate}/{self.replicates}" if self.replicates > 1 else ""
            where = f"{event.condition}{run}: " if event.condition else ""
            self.query_one("#train-phase", Static).update(inert(f"{where}{event.message} …"))
            panel = self._panel(event.condition)
            if panel is not None and panel.status in ("waiting", "interrupted"):
                panel.set_status("preparing")
            return
        if isinstance(event, ConditionFinished):
            panel = self._panel(event.result.condition)
            if panel is not None:
                panel.finished(event.result)
            return
        panel = self._panel(event.condition)
        if panel is None:
            return
        if isinstance(event, TrainingStarted):
            earlier: list[float] = []
            if event.done_steps and self.out is not None:
                folder = replicate_folder(self.out, event.condition, event.replicate)
                earlier = read_loss_curve(folder)  # a small csv
            panel.started(event, earlier)
            self.query_one("#train-phase", Static).update(inert(self.plan_text))
            self.query_one("#train-conditions").scroll_to_widget(panel, animate=False)
        elif isinstance(event, HeldoutEvaluated):
            panel.heldout_evaluated(event)
        elif isinstance(event, CheckpointSaved):
            panel.checkpoint_saved(event)

    @on(TrainingDone)
    def _done(self, message: TrainingDone) -> None:
        result = self.result = message.result
        self.query_one("#train-phase", Static).update("")
        if result.complete:
            self.status = "complete"
            text = Text("Adapters ready", "bold")
            text.append(f" in {result.folder}\n")
            for r in result.results:
                text.append("  ")
                text.append_text(inert(self._run_name(r), "bold"))
                text.append(f": {r.adapter}\n")
            if result.base_conditions:
                text.append_text(
                    inert(
                        "probed on the untouched base model: " + ", ".join(result.base_conditions)
                    )
                )
                text.append("\n")
            text.append("study.toml in that folder lists them · ", "dim")
            if self.trained_adapters():
                text.append("p: probe the study with exactly these adapters", "bold")
                text.append(" · ", "dim")
            text.append("escape: back", "dim")
            self._show_message(text, "-done")
        else:
            self.status = "interrupted"
            stopped = next((r for r in result.results if r.status == "interrupted"), None)
            text = Text("Stopped", "bold")
            if stopped is not None:
                text.append_text(
                    inert(
                        f" at step {stopped.steps}/{stopped.total_steps} of "
                        f"{self._run_name(stopped)};"
                        f" the checkpoint is kept in {stopped.folder / 'checkpoint'}"
                    )
                )
            text.append("\nPress t to resume (or open Training again from Home, or run ")
            text.append_text(inert(self._resume_command(), "bold"))
            text.append(")")
            self._show_message(text, "-stopped")
        self._update_bar()

    def _run_name(self, result: ConditionResult) -> str:
        """ "learns" (one run per condition) or "learns replicate 2/3"."""
        if self.replicates <= 1:
            return result.condition
        return f"{result.condition} replicate {result.replicate}/{self.replicates}"

    def _resume_command(self) -> str:
        import shlex

        parts = ["persona-tui", "train", self.scenario.source_path or self.scenario.id]
        parts += ["--model", str(self.model_path or self._model_ref())]
        if self.out is not None:
            parts += ["-o", str(self.out)]
        if self.request.replicates is not None:
            parts += ["--replicates", str(self.request.replicates)]
        return shlex.join(parts)

    @on(TrainingFailed)
    def _failed(self, message: TrainingFailed) -> None:
        self._show_error(message.error)

    def _show_error(self, error: str) -> None:
        self.status = "error"
        text = Text("Could not train\n\n", "bold")
        text.append_text(inert(error))
        text.append("\n\nt: try again · escape: back", "dim")
        self._show_message(text, "-error")
        self._update_bar()
        for panel in self.query(ConditionTraining):
            if panel.status in ("preparing", "training"):
                panel.set_status("waiting")
        self.notify(inert(error).plain, title="Training failed", severity="error", timeout=10)

    def _show_message(self, text: Text, kind: str) -> None:
        panel = self.query_one("#train-message", Static)
        panel.update(text)
        panel.set_classes(kind)
        panel.display = True

    # Actions --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "train":
            return not self.running and self.status != "complete"
        if action == "cancel_training":
            return self.running
        if action == "probe":
            return not self.running and self.status == "complete" and bool(self.trained_adapters())
        if action == "back":
            return not self.running
        return True

    def action_cancel_training(self) -> None:
        if self.cancel.is_set():
            self.notify("stopping after the current step …")
            return
        self.cancel.set()
        self.status = "stopping after this step …"
        self._update_bar()

    def action_back(self) -> None:
        self.dismiss()

    def trained_adapters(self) -> dict[str, Path]:
        """The folder of each condition this training finished (or found already trained):
        the run probes each of its replicates' adapters (run/adapters.py)."""
        if self.result is None:
            return {}
        return {
            r.condition: r.folder.parent
            for r in self.result.results
            if r.adapter is not None and r.replicate == 1
        }

    def action_probe(self) -> None:
        """Run the study on the model it was trained on, with exactly these adapters."""
        adapters = self.trained_adapters()
        if not adapters:
            return
        model = str(self.model_path) if self.model_path is not None else self._model_ref()
        self.dismiss()
        replicates = self.result.replicates if self.result is not None else None
        self.app.start_run(self.scenario, model, adapters=adapters, replicates=replicates)

    async def shutdown(self) -> None:
        """Stop training after the current step and wait until its checkpoint is saved."""
        self.cancel.set()
        worker = self._worker
        if worker is not None and worker.state in (WorkerState.PENDING, WorkerState.RUNNING):
            with contextlib.suppress(WorkerFailed, WorkerCancelled):
                await worker.wait()

    def on_unmount(self) -> None:
        self.cancel.set()  # the thread stops at its next step, with a checkpoint
