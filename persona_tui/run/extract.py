"""Extracting a trait's persona vectors: generate under each instruction, measure, save.

For each extraction question the model answers under the trait's positive instruction and
under its negative one (`samples` answers each, seeded by the question and sample alone,
so both sides of a pair share a seed); each answer is then teacher-forced after its prompt
in the measurement pass of the `HiddenStates` capability, and its mean activation over
its tokens taken at every layer from 1 on (the layers a control vector can steer). The
direction per layer is the difference of the sides' means (vectors/directions.py), its
held-out separation is read with whole questions held out, and the trait's control-vector
GGUF, its record and the answers are written to the folder (vectors/files.py,
vectors/record.py). `persona-tui vectors` calls `extract_vectors` (it loads the model);
a run calls `extract_traits` with the model it has loaded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from persona_tui import __version__
from persona_tui.backend_names import AUTO
from persona_tui.backends.base import (
    Backend,
    BatchDone,
    BatchedGeneration,
    GenerationRequest,
    HiddenStates,
    TokenLogprobs,
)
from persona_tui.errors import PersonaError
from persona_tui.models.config import Config, load_config
from persona_tui.run.events import EventCallback, VectorsExtracted, VectorsProgress
from persona_tui.run.loading import ModelLoader, load_run_model
from persona_tui.run.plan import trial_seed
from persona_tui.run.prompts import (
    ResolvedMode,
    conversation,
    render_prompt,
    resolve_mode,
    stop_strings,
)
from persona_tui.scenario.model import Condition, Scenario, Trait
from persona_tui.values import SamplingParams

NOT_MEASURABLE = (
    "this model's engine cannot read activations (persona vectors need llama.cpp or MLX)"
)
# Answers generated together (one batch) while extracting.
EXTRACT_BATCH = 16


@dataclass(frozen=True)
class Answer:
    """One generated answer and what it was written under."""

    side: str  # "positive" or "negative"
    question: int  # 0-based index in the trait's questions
    sample: int
    seed: int
    prompt: str
    text: str


def can_measure(backend: Backend) -> bool:
    return isinstance(backend, HiddenStates) and isinstance(backend, TokenLogprobs)


def side_condition(trait: Trait, side: str) -> Condition:
    """The trait's instruction on one side as a condition (its system text and shots)."""
    framing = trait.positive if side == "positive" else trait.negative
    return Condition(
        id=f"{trait.id}-{side}",
        label=f"{trait.label} ({side})",
        system=framing.system or "",
        shots=framing.shots,
    )


@dataclass(frozen=True)
class VectorsRequest:
    """What `persona-tui vectors` extracts: the traits of `scenario` (all when `traits` is
    empty) on the model `model`, into `out` (None: the scenario's folder for that model in
    the data folder, where runs look first)."""

    scenario: Scenario
    model: str | None = None
    config: Config | None = None
    backend: str = AUTO
    threads: int | None = None
    repack: str | None = None
    traits: tuple[str, ...] = ()
    out: Path | None = None
    seed: int | None = None


def extract_vectors(
    request: VectorsRequest,
    on_event: EventCallback,
    cancel: threading.Event | None = None,
    loader: ModelLoader | None = None,
) -> list[Path]:
    """Load the model, extract the traits asked for, close the model; the GGUFs written."""
    from persona_tui.vectors.store import default_folder

    scenario = request.scenario
    if not scenario.traits:
        raise PersonaError(
            f"scenario {scenario.id} declares no traits ([[traits]]; see docs/scenario-format.md)"
        )
    unknown = [t for t in request.traits if t not in {trait.id for trait in scenario.traits}]
    if unknown:
        known = ", ".join(trait.id for trait in scenario.traits)
        raise PersonaError(f"no trait {', '.join(unknown)} in {scenario.id} (it has: {known})")
    traits = [t for t in scenario.traits if not request.traits or t.id in request.traits]
    config = request.config if request.config is not None else load_config()
    ref = request.model or config.default_model
    backend = load_run_model(
        ref,
        config,
        on_event,
        backend=request.backend,
        threads=request.threads,
        repack=request.repack,
        loader=loader,
    )
    try:
        folder = request.out or default_folder(backend.info.sha256, scenario.id)
        return extract_traits(
            scenario, backend, traits, folder, on_event, seed=request.seed, cancel=cancel
        )
    finally:
        backend.close()


def extract_traits(
    scenario: Scenario,
    backend: Backend,
    traits: Sequence[Trait],
    folder: Path,
    on_event: EventCallback,
    *,
    seed: int | None = None,
    cancel: threading.Event | None = None,
) -> list[Path]:
    """Extract each trait's vectors with the loaded `backend` into `folder` (created);
    the paths of the control-vector GGUFs written. Raises PersonaError when the engine
    cannot read activations, or when cancelled (nothing of that trait is written)."""
    if not can_measure(backend):
        raise PersonaError(NOT_MEASURABLE)
    mode = resolve_mode(scenario.prompt_mode, backend, scenario.id)
    written = []
    for trait in traits:
        written.append(_extract_one(scenario, backend, trait, mode, folder, on_event, seed, cancel))
    return written


def _extract_one(
    scenario: Scenario,
    backend: Backend,
    trait: Trait,
    mode: ResolvedMode,
    folder: Path,
    on_event: EventCallback,
    seed: int | None,
    cancel: threading.Event | None,
) -> Path:
    import numpy as np

    from persona_tui.vectors.directions import fit_layers, recommend
    from persona_tui.vectors.files import ControlVector
    from persona_tui.vectors.record import LayerStats, VectorRecord
    from persona_tui.vectors.store import responses_path, save_trait

    started = time.perf_counter()
    base_seed = scenario.sampling.seed if seed is None else seed
    sampling = scenario.sampling.params
    answers = _generate(trait, backend, mode, sampling, base_seed, on_event, cancel)
    assert isinstance(backend, HiddenStates)
    layers = list(range(1, backend.n_layers))
    measured = _measure(trait, backend, answers, layers, on_event, cancel)
    positive = [(a, m) for a, m in zip(answers, measured, strict=True) if a.side == "positive"]
    negative = [(a, m) for a, m in zip(answers, measured, strict=True) if a.side == "negative"]
    kept_pos = [(a, m) for a, m in positive if m is not None]
    kept_neg = [(a, m) for a, m in negative if m is not None]
    if len(kept_pos) < 2 or len(kept_neg) < 2:
        raise PersonaError(
            f"trait {trait.id}: too few non-empty answers to extract a direction "
            f"({len(kept_pos)} positive, {len(kept_neg)} negative); raise max_tokens or samples"
        )
    directions, fits = fit_layers(
        layers,
        [m[0] for _, m in kept_pos],
        [m[0] for _, m in kept_neg],
        [a.question for a, _ in kept_pos],
        [a.question for a, _ in kept_neg],
    )
    layer = trait.layer if trait.layer is not None else recommend(fits)
    if not 1 <= layer < backend.n_layers:
        raise PersonaError(
            f"trait {trait.id}: layer {layer} is out of range; this model's layers are 1 to "
            f"{backend.n_layers - 1}"
        )
    recommended = recommend(fits)
    info = backend.info
    record = VectorRecord(
        trait=trait.id,
        label=trait.label,
        scenario=scenario.id,
        model_name=info.name,
        model_sha256=info.sha256,
        model_architecture=info.architecture,
        n_layers=backend.n_layers,
        n_embd=backend.n_embd,
        recommended_layer=recommended,
        per_layer=tuple(
            LayerStats(f.layer, round(f.auc, 6), round(f.norm, 6), round(f.gap, 6)) for f in fits
        ),
        positive_tokens=sum(m[1] for _, m in kept_pos),
        negative_tokens=sum(m[1] for _, m in kept_neg),
        seed=base_seed,
        samples=trait.samples,
        sampling=sampling,
        positive=trait.positive,
        negative=trait.negative,
        questions=trait.questions,
        gguf_sha256="",
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        persona_tui_version=__version__,
    )
    vector = ControlVector(
        info.architecture,
        {il: directions[k].astype(np.float32) for k, il in enumerate(layers)},
    )
    saved = save_trait(folder, record, vector)
    _write_answers(responses_path(folder, trait.id), answers)
    fit = next(f for f in fits if f.layer == layer)
    on_event(VectorsExtracted(trait.id, folder, layer, fit.auc, time.perf_counter() - started))
    return saved.gguf_path


def _generate(
    trait: Trait,
    backend: Backend,
    mode: ResolvedMode,
    sampling: SamplingParams,
    base_seed: int,
    on_event: EventCallback,
    cancel: threading.Event | None,
) -> list[Answer]:
    """Every answer, positive and negative, in a fixed order and batch composition."""
    stops = stop_strings(mode)
    planned: list[tuple[str, int, int, int, str]] = []
    for side in ("positive", "negative"):
        condition = side_condition(trait, side)
        for q, question in enumerate(trait.questions):
            prompt = render_prompt(mode, conversation(condition, [question], []), backend)
            for k in range(trait.samples):
                seed = trial_seed(base_seed, trait.id, f"q{q}", k)
                planned.append((side, q, k, seed, prompt))
    requests = [GenerationRequest(p[4], p[3], sampling, stops) for p in planned]
    texts = generate_texts(backend, requests, trait.id, on_event, cancel)
    _check_cancel(cancel, trait)
    return [
        Answer(side, q, k, seed, prompt, text)
        for (side, q, k, seed, prompt), text in zip(planned, texts, strict=True)
    ]


def _measure(
    trait: Trait,
    backend: Backend,
    answers: Sequence[Answer],
    layers: Sequence[int],
    on_event: EventCallback,
    cancel: threading.Event | None,
) -> list[tuple[Any, int] | None]:
    """Each answer's mean activation per layer (len(layers), n_embd) and its token count;
    None for an empty answer. Answers to one prompt are measured after it together."""
    assert isinstance(backend, HiddenStates) and isinstance(backend, TokenLogprobs)
    by_prompt: dict[str, list[int]] = {}
    for index, answer in enumerate(answers):
        by_prompt.setdefault(answer.prompt, []).append(index)
    results: list[tuple[Any, int] | None] = [None] * len(answers)
    done = 0
    on_event(VectorsProgress(trait.id, "measuring", 0, len(answers)))
    for prompt, indices in by_prompt.items():
        _check_cancel(cancel, trait)
        with backend.logprob_scope() as scope:
            prompt_tokens = scope.tokenize(prompt)
            continuations = [
                scope.continuation(prompt, prompt_tokens, answers[i].text)
                if answers[i].text.strip()
                else []
                for i in indices
            ]
        means = backend.hidden_states(prompt_tokens, continuations, layers)
        for j, index in enumerate(indices):
            if means.counts[j]:
                results[index] = (means.means[j], means.counts[j])
        done += len(indices)
        on_event(VectorsProgress(trait.id, "measuring", done, len(answers)))
    return results


def _write_answers(path: Path, answers: Sequence[Answer]) -> None:
    """The answers the directions were computed from, one JSON object per line."""
    import json

    from persona_tui._util.atomic import atomic_write_text

    lines = [
        json.dumps(
            {
                "side": a.side,
                "question": a.question,
                "sample": a.sample,
                "seed": a.seed,
                "prompt": a.prompt,
                "answer": a.text,
            },
            ensure_ascii=False,
        )
        for a in answers
    ]
    atomic_write_text(path, "".join(line + "\n" for line in lines), mode=0o644)


def generate_texts(
    backend: Backend,
    requests: Sequence[GenerationRequest],
    what: str,
    on_event: EventCallback,
    cancel: threading.Event | None,
) -> list[str]:
    """Each request's text, in order, `EXTRACT_BATCH` decoded together (a fixed batch
    composition, so the texts are reproducible), reporting `VectorsProgress(what, ...)`.
    Raises PersonaError when cancelled."""
    texts: list[str] = []
    on_event(VectorsProgress(what, "generating", 0, len(requests)))
    for begin in range(0, len(requests), EXTRACT_BATCH):
        if cancel is not None and cancel.is_set():
            raise PersonaError(f"{what}: cancelled; nothing was written")
        chunk = requests[begin : begin + EXTRACT_BATCH]
        if isinstance(backend, BatchedGeneration):
            done: dict[int, str] = {}
            for event in backend.generate_batch(chunk, cancel, batch=len(chunk)):
                if isinstance(event, BatchDone):
                    done[event.index] = event.result.text
            texts.extend(done[i] for i in range(len(chunk)))
        else:
            texts.extend(backend.generate(r, None, cancel).text for r in chunk)
        on_event(VectorsProgress(what, "generating", len(texts), len(requests)))
    return texts


def _check_cancel(cancel: threading.Event | None, trait: Trait) -> None:
    if cancel is not None and cancel.is_set():
        raise PersonaError(f"extraction of trait {trait.id} cancelled; nothing was written")
