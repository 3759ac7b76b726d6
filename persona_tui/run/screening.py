"""Data screening before training: how far each framing's training data pushes a trait.

The persona-vector prediction (Chen et al. 2025): a training example will shift the
persona along a trait by as much as its completion expresses the trait *beyond what the
model would have said itself* to the same request. For each training condition (framing)
and each screened example, the base model answers the framed request (seeded like a
trial: by the study seed, the framing and the example), and both its answer and the
example's completion are teacher-forced after the framed prompt; the example's score is
the completion's projection minus the answer's, at the trait's layer, on its unit
direction. A framing's mean score (with a bootstrap interval over examples) predicts
which framing's adapter moves further along the trait; the study's probing run measures
how far each actually moved (the adapters' projections against the base model's).

The same examples are screened under every framing (a seeded subset of the training
split, `SCREEN_EXAMPLES` at most), so the framings' scores are paired by example.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_tui.backend_names import AUTO
from persona_tui.backends.base import Backend, GenerationRequest
from persona_tui.errors import PersonaError
from persona_tui.models.config import Config
from persona_tui.run.events import EventCallback, VectorsProgress
from persona_tui.run.extract import can_measure, generate_texts
from persona_tui.run.loading import load_run_model
from persona_tui.run.plan import trial_seed
from persona_tui.run.projections import trait_units
from persona_tui.run.prompts import framed_messages, render_prompt, resolve_mode, stop_strings
from persona_tui.scenario.model import Scenario, TrainingExample
from persona_tui.session.model import TraitRecord

SCREEN_EXAMPLES = 48
BOOTSTRAP = 2000


@dataclass(frozen=True)
class ScreenedExample:
    condition: str
    example: int  # index in the scenario's training examples
    source: str  # file:line of the example
    trait: str
    completion: float  # the training completion's projection
    own_answer: float  # the base model's own answer's projection
    answer: str  # that answer

    @property
    def difference(self) -> float:
        return self.completion - self.own_answer


@dataclass(frozen=True)
class FramingScreen:
    """One framing's mean projection difference on one trait, with its interval."""

    condition: str
    trait: str
    mean: float
    low: float
    high: float
    examples: int


def screened_examples(scenario: Scenario, limit: int = SCREEN_EXAMPLES) -> list[int]:
    """Indices of the training examples screened: a seeded subset of the training split
    (the same for every framing), in file order."""
    training = scenario.training
    if training is None:
        return []
    train, _heldout = training.split()
    keep = {id(e) for e in train}
    indices = [i for i, e in enumerate(training.examples) if id(e) in keep]
    if len(indices) > limit:
        indices = sorted(random.Random(training.seed).sample(indices, limit))
    return indices


def screen_training_data(
    scenario: Scenario,
    backend: Backend,
    traits: Mapping[str, TraitRecord],
    on_event: EventCallback,
    *,
    limit: int = SCREEN_EXAMPLES,
    cancel: threading.Event | None = None,
) -> list[ScreenedExample]:
    """Every screened example's projections under every training condition (the base
    model as loaded: no adapter, no steering)."""
    if scenario.training is None:
        raise PersonaError(f"scenario {scenario.id} has no [training] data to screen")
    if not traits:
        raise PersonaError(f"scenario {scenario.id} declares no traits to screen against")
    if not can_measure(backend):
        raise PersonaError("this model's engine cannot read activations (llama.cpp or MLX)")
    mode = resolve_mode(scenario.prompt_mode, backend, scenario.id)
    units = trait_units(traits)
    layers = sorted({record.layer for record in traits.values()})
    examples = scenario.training.examples
    chosen = screened_examples(scenario, limit)
    work: list[tuple[str, int, str]] = []
    for condition in scenario.conditions:
        if condition.training is None:
            continue
        for index in chosen:
            prompt = render_prompt(
                mode, framed_messages(condition.training, examples[index]), backend
            )
            work.append((condition.id, index, prompt))
    answers = _own_answers(scenario, backend, work, mode, on_event, cancel)
    completions = [
        " " + examples[index].assistant.strip()
        if mode == "transcript"
        else examples[index].assistant
        for _condition, index, _prompt in work
    ]
    return _measure(
        backend, work, answers, completions, examples, units, traits, layers, on_event, cancel
    )


def _own_answers(
    scenario: Scenario,
    backend: Backend,
    work: Sequence[tuple[str, int, str]],
    mode: Any,
    on_event: EventCallback,
    cancel: threading.Event | None,
) -> list[str]:
    seed = scenario.training.seed if scenario.training is not None else scenario.sampling.seed
    requests = [
        GenerationRequest(
            prompt,
            trial_seed(seed, condition, f"example-{index}", 0),
            scenario.sampling.params,
            stop_strings(mode),
        )
        for condition, index, prompt in work
    ]
    return generate_texts(backend, requests, "screening", on_event, cancel)


def _measure(
    backend: Any,
    work: Sequence[tuple[str, int, str]],
    answers: Sequence[str],
    completions: Sequence[str],
    examples: Sequence[TrainingExample],
    units: Mapping[str, Any],
    traits: Mapping[str, TraitRecord],
    layers: Sequence[int],
    on_event: EventCallback,
    cancel: threading.Event | None,
) -> list[ScreenedExample]:
    import numpy as np

    screened: list[ScreenedExample] = []
    on_event(VectorsProgress("screening", "measuring", 0, len(work)))
    for done, ((condition, index, prompt), answer, completion) in enumerate(
        zip(work, answers, completions, strict=True), start=1
    ):
        if cancel is not None and cancel.is_set():
            raise PersonaError("data screening cancelled")
        example = examples[index]
        with backend.logprob_scope() as scope:
            prompt_tokens = scope.tokenize(prompt)
            texts = [completion, answer if answer.strip() else ""]
            continuations = [
                scope.continuation(prompt, prompt_tokens, t) if t.strip() else [] for t in texts
            ]
        means = backend.hidden_states(prompt_tokens, continuations, layers)
        if not means.counts[1]:
            continue  # the model said nothing: no answer to compare with
        at = {layer: k for k, layer in enumerate(means.layers)}
        for trait, record in traits.items():
            unit = units[trait]
            k = at[record.layer]
            screened.append(
                ScreenedExample(
                    condition=condition,
                    example=index,
                    source=example.source,
                    trait=trait,
                    completion=float(np.dot(means.means[0][k], unit)),
                    own_answer=float(np.dot(means.means[1][k], unit)),
                    answer=answer,
                )
            )
        on_event(VectorsProgress("screening", "measuring", done, len(work)))
    return screened


def summarize(screened: Sequence[ScreenedExample], seed: int = 0) -> list[FramingScreen]:
    """Each (framing, trait)'s mean difference with a 95% bootstrap interval over its
    examples (percentile, `BOOTSTRAP` resamples, seeded)."""
    import numpy as np

    groups: dict[tuple[str, str], list[float]] = {}
    for item in screened:
        groups.setdefault((item.condition, item.trait), []).append(item.difference)
    rng = np.random.default_rng(seed)
    out = []
    for (condition, trait), values in groups.items():
        data = np.asarray(values)
        means = data[rng.integers(0, data.size, (BOOTSTRAP, data.size))].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        out.append(
            FramingScreen(condition, trait, float(data.mean()), float(low), float(high), data.size)
        )
    return out


@dataclass(frozen=True)
class StudyScreen:
    """A training study's data screening: every example's values and the framings' means."""

    examples: list[ScreenedExample]
    framings: list[FramingScreen]
    traits: dict[str, TraitRecord]
    csv: Path


def screen_study(
    scenario: Scenario,
    model: str,
    config: Config,
    out: Path,
    on_event: EventCallback,
    *,
    backend: str = AUTO,
    threads: int | None = None,
    vectors: Sequence[Path] = (),
    cancel: threading.Event | None = None,
) -> StudyScreen:
    """Load the base model, find (or extract) the scenario's trait vectors, screen its
    training data, write `out/screening.csv` (one row per example, framing and trait) and
    close the model."""
    from persona_tui.run.vectors import resolve_vectors

    loaded = load_run_model(model, config, on_event, backend=backend, threads=threads, repack=None)
    try:
        traits, _steering = resolve_vectors(scenario, loaded, vectors, model, on_event)
        screened = screen_training_data(scenario, loaded, traits, on_event, cancel=cancel)
    finally:
        loaded.close()
    out.mkdir(parents=True, exist_ok=True)
    path = write_screening(screened, out / "screening.csv")
    return StudyScreen(screened, summarize(screened), traits, path)


def write_screening(screened: Sequence[ScreenedExample], path: Path) -> Path:
    """The screened examples as CSV (written atomically)."""
    import csv
    import io

    from persona_tui._util.atomic import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["condition", "example", "source", "trait", "completion", "own_answer", "difference",
         "answer"]
    )  # fmt: skip
    for item in screened:
        writer.writerow(
            [item.condition, item.example, item.source, item.trait, f"{item.completion:.6f}",
             f"{item.own_answer:.6f}", f"{item.difference:.6f}", item.answer]
        )  # fmt: skip
    atomic_write_text(path, buffer.getvalue())
    return path


def paired_difference(
    screened: Sequence[ScreenedExample], first: str, second: str, trait: str, seed: int = 0
) -> FramingScreen | None:
    """`first`'s score minus `second`'s on the same examples (paired), with a 95%
    bootstrap interval over examples; None when they share no example."""
    import numpy as np

    def scores(condition: str) -> dict[int, float]:
        return {
            e.example: e.difference
            for e in screened
            if e.condition == condition and e.trait == trait
        }

    a, b = scores(first), scores(second)
    common = sorted(set(a) & set(b))
    if not common:
        return None
    data = np.array([a[i] - b[i] for i in common])
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, (BOOTSTRAP, data.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return FramingScreen(
        f"{first} - {second}", trait, float(data.mean()), float(low), float(high), data.size
    )
