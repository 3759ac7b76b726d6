"""The session record: a run's header (model, sampling, plan, scenario as run) and trials.

Frozen dataclasses only; reading and writing them as TOML is in `read` and `write`, and
the store that keeps a session file up to date is in `store`.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

from persona_tui.values import FinishReason, ModelInfo, SamplingParams

if TYPE_CHECKING:
    pass


FORMAT_VERSION = 1
SessionStatus = Literal["running", "complete", "interrupted"]


@dataclass(frozen=True)
class Annotation:
    """One annotator's judgement of a trial.

    `blind_seed` records how it was made: None when the annotator could see the trial's
    condition; in blind mode (conditions hidden), the seed that shuffled the trials, so
    analysis can separate blinded judgements from the others and anyone can rebuild the
    order the annotator saw (docs/session-format.md, "Blind annotation").
    """

    annotator: str
    time: str  # ISO 8601 with timezone
    label: str = ""  # "" when no label was set
    scores: dict[str, int] = field(default_factory=dict)
    note: str = ""
    blind_seed: int | None = None  # None = not blind; else the blind-mode shuffle seed


class Arm(NamedTuple):
    """What answered a trial: a condition, and for an adapter condition of a replicated
    training study the training run (replicate 1..N) whose adapter was loaded; 0 when the
    condition has one unnumbered run (no adapter, or sessions before replicates)."""

    condition: str
    replicate: int = 0

    @property
    def name(self) -> str:
        """ "learns r2" for a replicate, the condition id otherwise (how the CLI names it)."""
        return f"{self.condition} r{self.replicate}" if self.replicate else self.condition


@dataclass(frozen=True)
class TrialKey:
    """A trial's identity within a session."""

    condition: str
    probe: str
    sample: int
    replicate: int = 0  # the training run of an adapter condition (1..N); 0: one, unnumbered


@dataclass(frozen=True)
class Trial:
    condition: str
    probe: str
    sample: int
    seed: int
    prompt: str  # exactly what was sent (for multi-turn probes: the last turn's prompt)
    response: str  # exactly what the model produced (the last turn's answer)
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    started: str  # ISO 8601 with timezone
    seconds: float
    # Earlier answers of a multi-turn probe, in order (they also appear inside `prompt`).
    turn_responses: tuple[str, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    # The training run (replicate k of N) whose adapter answered; 0 for a condition without
    # replicates (the untouched model, an in-context scenario, sessions before replicates).
    replicate: int = 0
    # Trait id -> the mean over the response's tokens of the trait's layer output, projected
    # on the trait's unit direction (`[traits.<id>]` in the header says which layer and
    # vectors); empty when the run measured no traits (and in sessions before them).
    projections: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> TrialKey:
        return TrialKey(self.condition, self.probe, self.sample, self.replicate)

    @property
    def arm(self) -> Arm:
        return Arm(self.condition, self.replicate)


@dataclass(frozen=True)
class OptionScore:
    """The log-probability of one answer option's tokens after a cell's prompt."""

    id: str
    label: str
    text: str  # the continuation as scored (in transcript mode with its leading space)
    logprob: float  # natural log, summed over the option's tokens
    n_tokens: int
    token_logprobs: tuple[float, ...] = ()

    @property
    def mean_logprob(self) -> float:
        return self.logprob / self.n_tokens if self.n_tokens else 0.0


@dataclass(frozen=True)
class OptionCell:
    """The options of one (condition, probe), scored after the exact prompt of that cell."""

    condition: str
    probe: str
    prompt: str  # exactly the text the options were scored after
    prompt_tokens: int
    seconds: float
    options: tuple[OptionScore, ...] = ()
    # How the options were decoded (their values depend on it, like a trial's on `batch`):
    # the most tokens per decode of the probe's options, laid out together as in
    # backends/continuations.py; 0: each option alone with its last token (sessions before).
    batch: int = 0
    replicate: int = 0  # as Trial.replicate
    # Trait id -> the projection of the prompt's last token's activation (the state the
    # options are scored from) on the trait's unit direction; empty: no traits measured.
    projections: dict[str, float] = field(default_factory=dict)

    @property
    def arm(self) -> Arm:
        return Arm(self.condition, self.replicate)

    @property
    def key(self) -> CellKey:
        return CellKey(self.condition, self.probe, self.replicate)


class CellKey(NamedTuple):
    """An option cell's identity within a session: (condition, probe, replicate)."""

    condition: str
    probe: str
    replicate: int = 0


@dataclass(frozen=True)
class TraitRecord:
    """A trait the run measured (`[traits.<id>]`): the layer its projections were read at and
    the control-vector GGUF its direction came from, so a reader knows what was projected on."""

    trait: str
    layer: int
    vectors: str  # path of the control-vector GGUF, as loaded
    sha256: str  # of that file
    norm: float  # the direction's norm at `layer` (projections use the unit direction)


@dataclass(frozen=True)
class SteeringRecord:
    """A steered condition (`[steering.<condition>]`): which trait's direction, at which
    layer and scale, was added while it generated, from which vectors file."""

    condition: str
    trait: str
    layer: int
    scale: float
    vectors: str
    sha256: str


@dataclass(frozen=True)
class Plan:
    """What the run covers: the selected conditions and probes, samples per cell, and seed,
    and which passes it was asked to run (sampling, option scoring)."""

    conditions: tuple[str, ...]
    probes: tuple[str, ...]
    samples: int
    seed: int
    prompt_mode: Literal["chat", "transcript"]  # the mode actually used
    stop: tuple[str, ...] = ()
    # Sequences decoded at once (1 = one by one) and the cells of a group decoded through
    # them, refilled as sequences end (0: each cell's samples in groups of `batch`, as
    # sessions before groups spanning cells were run); see run/plan.batch_groups. Results
    # depend on both, like on eval_block.
    batch: int = 1
    batch_cells: int = 0
    # What the run was asked to do (`--no-sample`, `--no-score`; a resume keeps it unless
    # told otherwise): sample the trials, score the answer options. Never both False.
    # Sessions before these fields did both.
    sample: bool = True
    score: bool = True
    # A replicated training study: the conditions in `replicated` (those with adapters) run
    # once per training run, replicates 1..`replicates`, each with its own adapter; the
    # others once (replicate 0). 0: no replicates (sessions before them, other scenarios).
    replicates: int = 0
    replicated: tuple[str, ...] = ()

    @property
    def arms(self) -> tuple[Arm, ...]:
        """What runs each probe, in plan order: each condition, a replicated one once per
        replicate."""
        return tuple(
            Arm(c, r)
            for c in self.conditions
            for r in (range(1, self.replicates + 1) if c in self.replicated else (0,))
        )

    @property
    def total(self) -> int:
        return len(self.arms) * len(self.probes) * self.samples


@dataclass(frozen=True)
class AdapterRecord:
    """The LoRA adapter a training condition was probed with (`[adapters.<condition>]`).

    The key facts of its training record are copied here, and the record itself as text,
    so the session alone says what each condition's weights were.
    """

    condition: str
    path: str  # as loaded (absolute): an adapter GGUF, or an mlx-lm adapter folder (MLX)
    sha256: str  # of the weights (the GGUF, or adapters.safetensors); resume refuses a change
    size_bytes: int  # of the same file
    base_model_sha256: str = ""  # from training.toml; "" when the adapter has no record
    data_sha256: str = ""
    steps: int = 0
    hyperparameters: dict[str, str] = field(default_factory=dict)
    training_sha256: str = ""  # of training.toml
    training_record: str = ""  # training.toml's text, exactly
    # An mlx-lm folder's adapter_config.json (its rank, scale, layers and projections change
    # the model as the weights do); "" for a GGUF, whose settings are inside the file.
    config_sha256: str = ""
    # The training run: replicate k (1..N) of a replicated study; 0: the condition's one
    # adapter (sessions before replicates).
    replicate: int = 0

    @property
    def arm(self) -> Arm:
        return Arm(self.condition, self.replicate)


@dataclass(frozen=True)
class SessionHeader:
    """Everything but the trials: written once at creation, status updated as the run goes."""

    id: str
    scenario_id: str
    scenario_sha256: str
    scenario_source: str  # the scenario file's text, exactly as run
    scenario_path: str
    created: str  # ISO 8601 with timezone
    status: SessionStatus
    model: ModelInfo
    sampling: SamplingParams
    plan: Plan
    app_version: str
    chat_template: str | None = None  # the template used in chat mode, None in transcript mode
    # The LoRA adapter of each training condition of a training study (of each replicate of
    # it, in a replicated study), in plan order; a condition without one ran on the
    # untouched model.
    adapters: tuple[AdapterRecord, ...] = ()
    # The traits measured (trait id -> record) and the steered conditions (condition ->
    # record); empty for runs without them (and sessions before persona vectors).
    traits: dict[str, TraitRecord] = field(default_factory=dict)
    steering: dict[str, SteeringRecord] = field(default_factory=dict)

    def adapter_paths(self) -> dict[Arm, str]:
        """arm -> the adapter file it runs with (arms without one are absent)."""
        return {a.arm: a.path for a in self.adapters}


@dataclass
class Session:
    header: SessionHeader
    trials: list[Trial]
    path: Path
    option_cells: list[OptionCell] = field(default_factory=list)

    @property
    def traits(self) -> dict[str, TraitRecord]:
        """The traits the run measured (the header's `[traits.<id>]`)."""
        return self.header.traits

    @property
    def steering(self) -> dict[str, SteeringRecord]:
        """The steered conditions (the header's `[steering.<condition>]`)."""
        return self.header.steering


def new_session_id(scenario_id: str, now: datetime) -> str:
    """A sortable, filesystem-safe id such as "2026-11-29T0130-bully-school-play-3f2a".

    `now` is used as given (pass local time for local file names); the 4 random hex digits
    make two sessions of one scenario started in the same minute distinct.
    """
    ascii_id = unicodedata.normalize("NFKD", scenario_id).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_id.lower()).strip("-")[:40].strip("-")
    return f"{now:%Y-%m-%dT%H%M}-{slug or 'session'}-{os.urandom(2).hex()}"
