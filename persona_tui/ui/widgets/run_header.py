"""The Run screen's header: state, model, trials done/total, tokens/s, elapsed/remaining."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

from persona_tui.ui.eta import PassEta
from persona_tui.ui.text import duration, inert


@dataclass
class RunStats(PassEta):
    """Progress figures of the sampling pass in this screen (resumed trials count as done;
    the time left by `PassEta`'s rule, the one the option pass's panel uses)."""

    tokens: int = 0
    generating_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float | None:
        if self.generating_seconds <= 0 or not self.tokens:
            return None
        return self.tokens / self.generating_seconds


class RunHeader(Vertical):
    """Two lines and a bar; `state` is a short word like "loading model" or "running"."""

    DEFAULT_CSS = """
    RunHeader { height: 3; padding: 0 1; background: $panel; }
    RunHeader > .run-title { text-style: bold; height: 1; }
    RunHeader > .run-status { height: 1; }
    RunHeader > ProgressBar { width: 1fr; }
    RunHeader > ProgressBar > Bar { width: 1fr; }
    """

    def __init__(self, title: str, clock: Callable[[], float]) -> None:
        super().__init__(id="run-header")
        self._title = title
        self.clock = clock
        self.stats = RunStats()
        self.state = "starting"
        self.model_name = ""

    def compose(self) -> ComposeResult:
        yield Static(inert(self._title), classes="run-title")
        yield Static("", classes="run-status")
        yield ProgressBar(show_eta=False, id="run-progress")

    def on_mount(self) -> None:
        self.refresh_figures()

    def set_state(self, state: str) -> None:
        self.state = state
        self.refresh_figures()

    def refresh_figures(self) -> None:
        """Redraw the figures (called on events and once a second for the clocks)."""
        now = self.clock()
        stats = self.stats
        rate = stats.tokens_per_second
        title = self._title + (f" · {self.model_name}" if self.model_name else "")
        # Both lines are one row high (DEFAULT_CSS): redrawing them needs no screen layout,
        # and they are redrawn on every run event and each second.
        self.query_one(".run-title", Static).update(inert(title), layout=False)
        parts = [
            self.state,
            f"{stats.done}/{stats.total} trials" if stats.total else "–/– trials",
            f"{rate:.1f} tok/s" if rate is not None else "– tok/s",
            f"{duration(stats.elapsed(now))} elapsed",
            f"{duration(stats.remaining(now))} left",
        ]
        self.query_one(".run-status", Static).update(inert(" · ".join(parts)), layout=False)
        bar = self.query_one(ProgressBar)
        bar.display = bool(stats.total)  # no indeterminate animation before the plan is known
        if stats.total:
            bar.update(total=stats.total, progress=stats.done)
