"""What a run reports while it opens and finishes: one event type for every consumer.

`run.lifecycle.open_run` and `finish_run` call one callback with these events, from the
thread that runs them (and, with `--parallel`, a trial's text from its generation thread):
the CLI draws progress bars from them (cli/run.py), `persona-tui study` the same, and the
app turns them into messages (ui/run_bridge.py). In order: the model loading and loaded,
the session opened, the sampling pass (run started, each trial started, its text, finished
or failed, run finished), then the option pass (started, each cell scored, finished), then
the trait projections; extracting a trait's vectors reports its own progress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from persona_tui.run.plan import TrialSpec
from persona_tui.scenario.model import Scenario
from persona_tui.session.model import OptionCell, SessionHeader, SessionStatus, Trial
from persona_tui.values import ModelInfo

# Opening -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelLoading:
    ref: str  # what is being loaded: a model reference, or the path a session recorded


@dataclass(frozen=True)
class ModelLoaded:
    info: ModelInfo


@dataclass(frozen=True)
class SessionOpened:
    """A session is ready to run: new, or resumed with `finished` trials already in it."""

    scenario: Scenario
    header: SessionHeader
    path: Path
    finished: tuple[Trial, ...]


# Sampling ------------------------------------------------------------------------------


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


# The option pass -----------------------------------------------------------------------


@dataclass(frozen=True)
class OptionsStarted:
    done: int  # cells already in the session
    total: int  # cells the plan has (conditions × probes with options)


@dataclass(frozen=True)
class OptionsProgress:
    """One cell scored and saved: `done` of `total` cells (including earlier runs')."""

    cell: OptionCell
    done: int
    total: int


@dataclass(frozen=True)
class OptionsSummary:
    scored: int  # cells scored by this call
    done: int  # cells in the session now
    total: int  # cells the plan has
    cancelled: bool

    @property
    def complete(self) -> bool:
        return self.done == self.total


@dataclass(frozen=True)
class OptionsFinished:
    """The option pass ended; `summary` None when nothing was scored (`note` says why:
    the backend cannot score options, or the pass failed)."""

    summary: OptionsSummary | None
    note: str = ""
    failed: bool = False  # the pass raised (the error also reaches the caller)

    @property
    def complete(self) -> bool:
        return self.summary is None or self.summary.complete


# Persona vectors ------------------------------------------------------------------------


@dataclass(frozen=True)
class VectorsProgress:
    """Extracting a trait's directions (run/extract.py): `done` of `total` responses
    generated, then measured."""

    trait: str
    phase: Literal["generating", "measuring"]
    done: int
    total: int


@dataclass(frozen=True)
class VectorsExtracted:
    """A trait's control vector and record were written to `folder`."""

    trait: str
    folder: Path
    layer: int  # the layer runs measure and steer at
    auc: float  # its held-out separation
    seconds: float


@dataclass(frozen=True)
class ProjectionsProgress:
    """The projection pass (run/projections.py): `done` of `total` trials and cells
    measured and saved."""

    done: int
    total: int


@dataclass(frozen=True)
class ProjectionsSkipped:
    """The scenario declares traits, but this run records no projections on them (the
    engine cannot read activations); `note` says so in one line. Reported before the
    session opens; the run goes on."""

    note: str


RunEvent = (
    ModelLoading
    | ModelLoaded
    | SessionOpened
    | RunStarted
    | TrialStarted
    | TextChunk
    | TrialFinished
    | TrialFailed
    | RunFinished
    | OptionsStarted
    | OptionsProgress
    | OptionsFinished
    | VectorsProgress
    | VectorsExtracted
    | ProjectionsProgress
    | ProjectionsSkipped
)
EventCallback = Callable[[RunEvent], None]
