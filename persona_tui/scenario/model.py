"""The scenario model: frozen dataclasses for a study's framings, probes and annotation.

A scenario contrasts framings (conditions) of the same material and asks the same
probe questions under each. See docs/scenario-format.md for the file format.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final, Literal

from persona_tui.scenario.rules import RuleSet
from persona_tui.values import SamplingParams

PromptMode = Literal["auto", "chat", "transcript"]
PROMPT_MODES: Final[tuple[PromptMode, ...]] = ("auto", "chat", "transcript")

# Keys the annotation screen uses for navigation; a label may not take them (nor a digit,
# which enters scale values). " " is the space bar.
RESERVED_KEYS: Final = frozenset({"n", "q", "?", "+", "-", " "})


@dataclass(frozen=True)
class Study:
    """The published study a scenario follows."""

    title: str
    url: str = ""
    citation: str = ""


@dataclass(frozen=True)
class Shot:
    """One demonstration exchange: the in-context "training" transcript of a condition."""

    user: str
    assistant: str


USER_PLACEHOLDER: Final = "{user}"
"""Where a training framing's user turn puts the example's user text."""


@dataclass(frozen=True)
class TrainingFraming:
    """How a training condition frames every training example (`[conditions.training]`).

    `user` holds `{user}` exactly once: the example's user text goes there, so the same
    completions are trained under each framing.
    """

    system: str = ""
    user: str = "{user}"

    def user_turn(self, user: str) -> str:
        return self.user.replace(USER_PLACEHOLDER, user)


@dataclass(frozen=True)
class TrainingExample:
    """One training exchange; `source` says where it is written (`file.jsonl:12`)."""

    user: str
    assistant: str
    source: str


@dataclass(frozen=True)
class TrainingSet:
    """A scenario's `[training]` table: the completions every training condition learns.

    `examples_path` is the JSONL file as written in the scenario ("" when inline only) and
    `examples_sha256` the sha256 of its bytes ("" without a file, or when the copy of a
    scenario in a session is parsed without reading it: `read_training_examples=False`).
    """

    examples: tuple[TrainingExample, ...]
    heldout: float
    seed: int
    examples_path: str = ""
    examples_sha256: str = ""
    # Training runs per training condition (`[training] replicates`): replicate k trains
    # with the seed `seed + k - 1`; the held-out split stays the study seed's.
    replicates: int = 1

    @property
    def heldout_count(self) -> int:
        """Examples kept out for the held-out loss: `heldout` of them, at least one if > 0."""
        if self.heldout <= 0 or len(self.examples) < 2:
            return 0
        return min(len(self.examples) - 1, max(1, round(len(self.examples) * self.heldout)))

    def split(self) -> tuple[tuple[TrainingExample, ...], tuple[TrainingExample, ...]]:
        """(training, held-out) examples: a split seeded by `seed`, each part in file order."""
        order = list(range(len(self.examples)))
        random.Random(self.seed).shuffle(order)
        kept_out = set(order[: self.heldout_count])
        train = tuple(e for i, e in enumerate(self.examples) if i not in kept_out)
        heldout = tuple(e for i, e in enumerate(self.examples) if i in kept_out)
        return train, heldout


@dataclass(frozen=True)
class Steer:
    """A condition's steering (`steer = { trait, scale, layer }`): `scale` times the trait's
    direction added to the residual stream at `layer` (None: the layer the trait's
    extraction recommends) while the model answers. The trait's vectors may come from
    another scenario's extraction (`run --vectors DIR`), so `trait` need not be declared
    here. A sweep (`scale = [...]`) is expanded by scenario/steering.py into one condition
    per scale, each with a single-scale Steer."""

    trait: str
    scale: float
    layer: int | None = None


@dataclass(frozen=True)
class Condition:
    """A framing: its system text and demonstration turns come before every probe.

    A condition with `training` gets a LoRA adapter trained on the scenario's training
    examples under that framing; one without is the untouched base model.
    """

    id: str
    label: str
    system: str = ""
    shots: tuple[Shot, ...] = ()
    note: str = ""
    training: TrainingFraming | None = None
    # A condition a test framing derives (scenario/test_framings.py): every probe turn is
    # put as `user` says ({user}: the turn's text), the model carries the adapters of the
    # training condition `adapter_of` ("" none: the untouched model), `test_framing` names
    # the framing and `source` the condition it was derived from.
    user: str = USER_PLACEHOLDER
    adapter_of: str = ""
    test_framing: str = ""
    source: str = ""
    # Steering while this condition's probes are answered (None: none).
    steer: Steer | None = None
    # The condition id its trials' seeds derive from ("": its own id). The conditions a
    # steering sweep derives keep the written condition's, so sample k of probe p has the
    # same seed at every scale (scenario/steering.py).
    seed_id: str = ""

    @property
    def seed_condition(self) -> str:
        """The condition id this condition's trial seeds derive from (run/plan.trial_seed)."""
        return self.seed_id or self.id

    @property
    def adapter_condition(self) -> str | None:
        """The training condition whose adapters answer this condition's probes (itself
        when it is one), None for the untouched model."""
        if self.training is not None:
            return self.id
        return self.adapter_of or None

    def user_turn(self, text: str) -> str:
        """A probe turn as this condition puts it (as written, unless a test framing)."""
        return self.user.replace(USER_PLACEHOLDER, text)


@dataclass(frozen=True)
class TestFraming:
    """A framing applied at probe time only (`[[test_framings]]`): every condition of a
    study is also probed with its probe turns put as `user` says, after `system`. Does a
    framing seen in training act as a trigger when it comes back?"""

    id: str
    label: str
    system: str = ""
    user: str = USER_PLACEHOLDER


@dataclass(frozen=True)
class TraitFraming:
    """One side of a trait (`positive` or `negative`): a system text and/or demonstration
    exchanges, put before each extraction question as a condition's are (run/prompts)."""

    system: str | None = None
    shots: tuple[Shot, ...] = ()


@dataclass(frozen=True)
class Trait:
    """A trait whose direction in activation space is extracted (`[[traits]]`).

    Responses to `questions` under `positive` and under `negative` are generated
    (`samples` per question and side); the difference of their mean activations is the
    trait's direction. `questions_from_probes`: the file said `questions = "probes"`, and
    `questions` holds the probes' first turns. `layer`: the layer runs measure and steer at
    when a condition does not say (None: the layer the extraction recommends).
    """

    id: str
    label: str
    positive: TraitFraming
    negative: TraitFraming
    questions: tuple[str, ...]
    questions_from_probes: bool = False
    samples: int = 2
    layer: int | None = None

    def framing(self, positive: bool) -> TraitFraming:
        return self.positive if positive else self.negative


@dataclass(frozen=True)
class Option:
    """A scored answer to a probe: the `text` of an answer exemplifying annotation `label`.

    Its log-probability after each condition's prompt is a likelihood probe (no sampling).
    """

    id: str
    label: str
    text: str


@dataclass(frozen=True)
class Probe:
    """A question asked under every condition.

    `turns` are the scripted user turns, in order (a single-turn probe has one). The model
    answers each turn; its earlier answers stay in the context of the later turns.
    `options` are answers whose likelihood is scored after the (last) turn.
    """

    id: str
    turns: tuple[str, ...]
    options: tuple[Option, ...] = ()

    @property
    def text(self) -> str:
        return self.turns[-1]


@dataclass(frozen=True)
class Label:
    id: str
    key: str  # a single key that sets this label in the annotation screen
    description: str = ""
    bad: bool = False  # marks labels that count as the behaviour under study (statistics default)


@dataclass(frozen=True)
class Scale:
    id: str
    min: int
    max: int
    description: str = ""


@dataclass(frozen=True)
class AnnotationSchema:
    labels: tuple[Label, ...] = ()
    scales: tuple[Scale, ...] = ()
    notes: bool = True


@dataclass(frozen=True)
class SamplingDefaults:
    """A scenario's `[sampling]` table: generation parameters plus samples per cell and seed."""

    samples: int = 3
    seed: int = 0
    params: SamplingParams = SamplingParams()  # noqa: RUF009 (frozen, so sharing it is safe)


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    description: str
    study: Study | None
    prompt_mode: PromptMode
    sampling: SamplingDefaults
    conditions: tuple[Condition, ...]
    probes: tuple[Probe, ...]
    annotation: AnnotationSchema
    source: str  # the file's text, exactly as read (sessions keep a copy)
    source_path: str  # where it was loaded from ("<string>" when parsed from text)
    sha256: str  # of `source` encoded as UTF-8
    rules: RuleSet = field(
        default_factory=RuleSet
    )  # automatic first-pass labelling rules (`[[rules]]`)
    training: TrainingSet | None = None  # `[training]`: a training study (LoRA per framing)
    # `[[test_framings]]`; `conditions` holds, after the written ones, each written
    # condition under each test framing (scenario/test_framings.py).
    test_framings: tuple[TestFraming, ...] = ()
    # `[[traits]]`: the traits whose directions `persona-tui vectors` extracts.
    traits: tuple[Trait, ...] = ()

    def trait(self, trait_id: str) -> Trait:
        return next(t for t in self.traits if t.id == trait_id)

    def condition(self, condition_id: str) -> Condition:
        return next(c for c in self.conditions if c.id == condition_id)

    def probe(self, probe_id: str) -> Probe:
        return next(p for p in self.probes if p.id == probe_id)

    @property
    def training_conditions(self) -> tuple[Condition, ...]:
        """The conditions that get an adapter (those with `[conditions.training]`)."""
        return tuple(c for c in self.conditions if c.training is not None)
