"""One training condition on the Training screen: a bar, the figures, a loss chart, notices.

A condition trained several times (replicates) keeps one panel: its bar, figures and chart
are the replicate training now ("replicate 2/3" in the border's title), and a
second bar under them counts the condition's steps over all its replicates ("all 3 runs").
One panel per condition, not per run, so two conditions of three replicates still fit an
80×24 terminal.

The chart is Textual's own `Sparkline` (a bar per step or per bucket of steps, as many rows
as the widget is tall): it follows the theme's colours, resizes with the terminal and costs
one short list per update, where a plotext chart would be re-rendered as ANSI text at every
step, in its own colours. Its axis is the caption under it (first, last and lowest loss).
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Sparkline, Static

from persona_tui.scenario.model import Condition
from persona_tui.training.params import (
    CheckpointSaved,
    ConditionResult,
    HeldoutEvaluated,
    StepFinished,
    TrainingStarted,
)
from persona_tui.ui.text import duration, inert

STATUS_TEXT = {
    "waiting": "waiting",
    "preparing": "preparing",
    "training": "training",
    "complete": "complete",
    "already-trained": "already trained",
    "interrupted": "stopped · checkpoint kept",
}


class ConditionTraining(Vertical):
    """A training condition's progress: `status`, step figures, loss chart, last notice;
    with `replicates` > 1 the replicate training now and the condition's overall bar."""

    DEFAULT_CSS = """
    ConditionTraining { height: auto; border: round $panel; padding: 0 1; margin: 0 0 1 0; }
    ConditionTraining.-active { border: round $primary; }
    ConditionTraining.-done { border: round $success; }
    ConditionTraining.-stopped { border: round $warning; }
    ConditionTraining > .training-figures { height: auto; }
    ConditionTraining > ProgressBar { width: 1fr; }
    ConditionTraining > ProgressBar > Bar { width: 1fr; }
    ConditionTraining > Sparkline { height: 4; margin: 1 0 0 0; }
    ConditionTraining > .training-caption { height: 1; color: $text-muted; }
    ConditionTraining > .training-notice { height: auto; }
    ConditionTraining > .training-overall { height: 1; }
    ConditionTraining > .training-overall > Static { width: auto; color: $text-muted; }
    ConditionTraining > .training-overall > ProgressBar { width: 1fr; }
    ConditionTraining > .training-overall > ProgressBar > Bar { width: 1fr; }
    """

    def __init__(self, condition: Condition, replicates: int = 1) -> None:
        super().__init__(id=f"training-{condition.id}")
        self.condition = condition
        self.replicates = max(1, replicates)
        self.replicate = 1  # the replicate the bar, figures and chart show
        self.runs_done: dict[int, int] = {}  # finished replicate → its steps
        self.status = "waiting"
        self.done = 0
        self.total = 0
        self.epoch = 0
        self.loss: float | None = None
        self.heldout: float | None = None
        self.tokens_per_second: float | None = None
        self.eta: float | None = None
        self.losses: list[float] = []
        self.heldout_losses: list[float] = []
        self.notice = Text()

    def compose(self) -> ComposeResult:
        yield ProgressBar(show_eta=False, classes="training-bar")
        yield Static("", classes="training-figures")
        if self.replicates > 1:
            with Horizontal(classes="training-overall"):
                yield Static(f"all {self.replicates} runs ")
                yield ProgressBar(show_eta=False, show_percentage=False)
        yield Sparkline([], classes="training-chart")
        yield Static("", classes="training-caption")
        yield Static("", classes="training-notice")

    def on_mount(self) -> None:
        self._refresh_all()

    # Updates from the screen ---------------------------------------------------------------

    def set_status(self, status: str) -> None:
        self.status = status
        self.set_class(status in ("preparing", "training"), "-active")
        self.set_class(status in ("complete", "already-trained"), "-done")
        self.set_class(status == "interrupted", "-stopped")
        self._refresh_title()

    def started(self, event: TrainingStarted, earlier_losses: Iterable[float] = ()) -> None:
        """A replicate's training starts (or resumes at `done_steps`); `earlier_losses`
        fill the chart. The chart and figures start over for each replicate."""
        if event.replicate != self.replicate:
            self.replicate = event.replicate
            self.losses, self.heldout_losses = [], []
            self.loss = self.heldout = self.tokens_per_second = None
            self.epoch = 0
        self.total, self.done = event.total_steps, event.done_steps
        if event.done_steps and not self.losses:
            self.losses = list(earlier_losses)[: event.done_steps]
        self.losses = self.losses[: event.done_steps]
        self.eta = None
        self.set_status("training")
        self.notice = inert(
            f"{event.train_examples} training examples, {event.heldout_examples} held out"
            + (f"; resumed at step {event.done_steps}" if event.done_steps else "")
        )
        self._refresh_all()

    def steps(self, steps: Iterable[StepFinished]) -> None:
        """Steps finished since the last update (only the latest sets the figures)."""
        latest: StepFinished | None = None
        for step in steps:
            self.losses.append(step.loss)
            latest = step
        if latest is None:
            return
        self.done, self.total, self.epoch = latest.step, latest.total_steps, latest.epoch
        self.loss, self.tokens_per_second = latest.loss, latest.tokens_per_second
        self.eta = latest.eta_seconds
        self._refresh_progress()
        self._refresh_figures()
        self._refresh_chart()

    def heldout_evaluated(self, event: HeldoutEvaluated) -> None:
        self.heldout = event.loss
        self.heldout_losses.append(event.loss)
        self._refresh_figures()
        self._refresh_chart()

    def checkpoint_saved(self, event: CheckpointSaved) -> None:
        self.set_notice(f"checkpoint at step {event.step}: {event.path}")

    def finished(self, result: ConditionResult) -> None:
        """A replicate ended: the panel's status is its own while replicates are left
        ("waiting" for the next), the condition's after the last (or a stop)."""
        self.replicate = result.replicate
        self.done, self.total = result.steps, result.total_steps
        self.loss = result.train_loss if result.train_loss is not None else self.loss
        self.heldout = result.heldout_loss if result.heldout_loss is not None else self.heldout
        self.eta = None
        if result.status != "interrupted":
            self.runs_done[result.replicate] = result.steps
        last = result.replicate >= self.replicates
        self.set_status(result.status if last or result.status == "interrupted" else "waiting")
        if result.adapter is not None:
            self.set_notice(f"adapter: {result.adapter}")
        else:
            self.set_notice(f"checkpoint kept: {result.folder / 'checkpoint'}")
        self._refresh_all()

    def set_notice(self, message: str) -> None:
        self.notice = inert(message)
        self.query_one(".training-notice", Static).update(self.notice)

    @property
    def adapter_notice(self) -> str:
        return self.notice.plain

    # Rendering --------------------------------------------------------------------------

    def _refresh_all(self) -> None:
        self._refresh_title()
        self._refresh_progress()
        self._refresh_figures()
        self._refresh_chart()
        self.query_one(".training-notice", Static).update(self.notice)

    def _refresh_title(self) -> None:
        title = Text()
        title.append_text(inert(self.condition.label or self.condition.id, "bold"))
        if self.condition.label and self.condition.label != self.condition.id:
            title.append_text(inert(f" ({self.condition.id})", "dim"))
        if self.replicates > 1:
            title.append(f" · replicate {self.replicate}/{self.replicates}")
        self.border_title = title
        status = STATUS_TEXT.get(self.status, self.status)
        if self.replicates > 1:
            done = len(self.runs_done)
            status = f"{done}/{self.replicates} runs done · {status}"
        self.border_subtitle = status

    def _refresh_progress(self) -> None:
        bar = self.query_one(".training-bar", ProgressBar)
        if self.total:
            bar.update(total=self.total, progress=self.done)
        if self.replicates > 1 and self.total:
            overall = self.query_one(".training-overall > ProgressBar", ProgressBar)
            finished = sum(self.runs_done.values())
            current = 0 if self.replicate in self.runs_done else self.done
            overall.update(total=self.total * self.replicates, progress=finished + current)

    def _refresh_figures(self) -> None:
        text = Text()
        if self.total:
            text.append(f"step {self.done}/{self.total}", "bold")
            if self.epoch:
                text.append(f" · epoch {self.epoch}")
        else:
            text.append("not started", "dim")
        if self.loss is not None:
            text.append(f" · loss {self.loss:.3f}")
        if self.heldout is not None:
            text.append(f" · held-out {self.heldout:.3f}")
        if self.tokens_per_second is not None:
            text.append(f" · {self.tokens_per_second:.0f} tok/s")
        if self.status == "training" and self.eta is not None:
            text.append(f" · ETA {duration(self.eta)}")
        self.query_one(".training-figures", Static).update(text)

    def _refresh_chart(self) -> None:
        chart = self.query_one(Sparkline)
        chart.data = list(self.losses)
        chart.display = bool(self.losses)
        caption = self.query_one(".training-caption", Static)
        caption.display = bool(self.losses)
        if not self.losses:
            return
        text = Text(
            f"loss {self.losses[0]:.3f} → {self.losses[-1]:.3f} "
            f"(lowest {min(self.losses):.3f}, {len(self.losses)} steps)"
        )
        if self.heldout_losses:
            text.append(f" · held-out {self.heldout_losses[0]:.3f} → {self.heldout_losses[-1]:.3f}")
        caption.update(text)
