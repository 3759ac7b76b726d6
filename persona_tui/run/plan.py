"""Planning a run: a scenario and run options become a plan and its trials, each with its seed.

The order of the trials groups those that share a prompt prefix, so a backend's prefix
cache is reused; a trial's seed depends only on the scenario seed and the trial's key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from persona_tui.backends.base import Backend, BatchedGeneration
from persona_tui.errors import PersonaError
from persona_tui.run.prompts import ResolvedMode, first_turn_prompt, stop_strings
from persona_tui.scenario.model import Scenario
from persona_tui.session.model import AdapterRecord, Arm, Plan, TrialKey
from persona_tui.values import SamplingParams


def trial_seed(scenario_seed: int, condition: str, probe: str, sample: int) -> int:
    """A trial's seed, derived from its identity alone.

    Adding or removing conditions, probes or samples never changes another trial's seed.
    The result fits in 31 bits (llama.cpp reserves 0xFFFFFFFF for "random").
    """
    identity = f"{scenario_seed}\x1f{condition}\x1f{probe}\x1f{sample}".encode()
    return int.from_bytes(hashlib.sha256(identity).digest()[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class TrialSpec:
    condition: str
    probe: str
    sample: int
    seed: int
    replicate: int = 0  # the training run whose adapter answers (session/model.py Arm)

    @property
    def key(self) -> TrialKey:
        return TrialKey(self.condition, self.probe, self.sample, self.replicate)

    @property
    def arm(self) -> Arm:
        return Arm(self.condition, self.replicate)


@dataclass(frozen=True)
class RunOptions:
    """Command-line or UI overrides of a scenario's defaults; None keeps the default."""

    samples: int | None = None
    seed: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    conditions: Sequence[str] | None = None
    probes: Sequence[str] | None = None
    # Sequences decoded at once (None: as many as a cell has samples, as many as the
    # backend takes; 1: one by one).
    batch: int | None = None
    # Sample the trials, score the answer options (`--sample`/`--no-sample`,
    # `--score`/`--no-score`). None: a new run does it, a resume keeps the session's choice.
    sample: bool | None = None
    score: bool | None = None


def run_choices(options: RunOptions, recorded: Plan | None = None) -> tuple[bool, bool]:
    """Whether the run samples the trials and scores the answer options: what `options`
    say, else what the session `recorded` (a resume), else both (a new run).

    PersonaError when that leaves nothing to do.
    """
    sample = options.sample if options.sample is not None else (recorded is None or recorded.sample)
    score = options.score if options.score is not None else (recorded is None or recorded.score)
    if sample or score:
        return sample, score
    if options.sample is False and options.score is False:
        raise PersonaError("--no-sample and --no-score leave nothing to do; drop one of them")
    if options.score is False:  # the session does not sample
        given, recorded_choice, undo = "--no-score", "samples no trials (--no-sample)", "--sample"
    else:  # the session does not score
        given, recorded_choice, undo = "--no-sample", "scores no options (--no-score)", "--score"
    raise PersonaError(
        f"this session {recorded_choice}, so {given} leaves it nothing to do; "
        f"add {undo} to change its choice"
    )


def _select(kind: str, wanted: Sequence[str] | None, available: Sequence[str]) -> tuple[str, ...]:
    if not wanted:
        return tuple(available)
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise PersonaError(
            f"unknown {kind} {', '.join(repr(u) for u in unknown)}; "
            f"this scenario has: {', '.join(available)}"
        )
    return tuple(dict.fromkeys(wanted))


def effective_sampling(scenario: Scenario, options: RunOptions) -> SamplingParams:
    params = scenario.sampling.params
    if options.max_tokens is not None:
        if options.max_tokens < 1:
            raise PersonaError("--max-tokens must be at least 1")
        params = replace(params, max_tokens=options.max_tokens)
    if options.temperature is not None:
        if options.temperature < 0:
            raise PersonaError("--temperature must be 0 or more")
        params = replace(params, temperature=options.temperature)
    return params


def make_plan(
    scenario: Scenario,
    options: RunOptions,
    mode: ResolvedMode,
    backend: Backend | None = None,
    adapters: Sequence[AdapterRecord] = (),
) -> tuple[Plan, SamplingParams]:
    """The plan of a run and its sampling parameters, computed once from everything that
    bounds them: the scenario, the options, the backend (None: one sequence at a time) and
    the adapters a training study probes (run/adapters.py `study_adapters`).

    What to run: selected conditions and probes, samples per cell, seed, prompt mode, and
    `batch`, how many sequences are decoded at once: `options.batch` (None: a cell's
    samples), at most what the backend takes and what fits its context, in groups of
    `batch_cells` cells; in a replicated training study, which conditions run once per
    training run (those whose adapters are replicates 1..N). Recorded in the session as
    `[plan]` and `[sampling]`.
    """
    do_sample, do_score = run_choices(options)
    sampling = effective_sampling(scenario, options)
    samples = scenario.sampling.samples if options.samples is None else options.samples
    if samples < 1:
        raise PersonaError("--samples must be at least 1")
    most = backend.max_batch if isinstance(backend, BatchedGeneration) else 1
    batch = batch_size(options.batch, samples, most)
    conditions = selected_conditions(scenario, options)
    probes = _select("probe", options.probes, [p.id for p in scenario.probes])
    seed = scenario.sampling.seed if options.seed is None else options.seed
    if seed < 0:
        raise PersonaError("--seed must be 0 or more")
    if batch > 1 and backend is not None:
        fits = batch_in_context(scenario, mode, backend, conditions, probes, sampling.max_tokens)
        if options.batch is not None and fits < options.batch:
            raise PersonaError(
                f"--batch {options.batch} does not fit the model's context of "
                f"{backend.info.context_length} tokens with max_tokens {sampling.max_tokens}: "
                f"at most {fits} sequences of the longest cell fit; use --batch with fewer, "
                "lower max_tokens, or give the model a larger context (n_ctx)"
            )
        batch = min(batch, fits)
    plan = Plan(
        conditions=conditions,
        probes=probes,
        samples=samples,
        seed=seed,
        prompt_mode=mode,
        stop=stop_strings(mode),
        batch=batch,
        batch_cells=group_cells(batch, samples, len(probes)),
        sample=do_sample,
        score=do_score,
        replicates=max((a.replicate for a in adapters), default=0),
        replicated=tuple(dict.fromkeys(a.condition for a in adapters if a.replicate)),
    )
    return plan, sampling


def selected_conditions(scenario: Scenario, options: RunOptions) -> tuple[str, ...]:
    """The conditions a run covers, in plan order (`--conditions`, else the scenario's)."""
    return _select("condition", options.conditions, [c.id for c in scenario.conditions])


def batch_size(batch: int | None, samples: int, most: int) -> int:
    """Sequences decoded at once: `batch` (None: a cell's samples), at most `most`, what the
    backend takes. More than a cell has decodes several cells' trials at once (a group
    spans cells)."""
    if batch is not None and batch < 1:
        raise PersonaError("--batch must be at least 1")
    if batch is not None and batch > 1 and most <= 1:
        raise PersonaError(
            f"--batch {batch} needs a backend that decodes several sequences together "
            "(llama.cpp); this one decodes one at a time"
        )
    if batch is not None and batch > most:
        raise PersonaError(f"--batch {batch} is more than this backend takes ({most})")
    return min(samples, most) if batch is None else batch


# Tokens a later turn of a multi-turn probe adds besides its text (role names, template).
TURN_OVERHEAD = 16


def batch_in_context(
    scenario: Scenario,
    mode: ResolvedMode,
    backend: Backend,
    conditions: Sequence[str],
    probes: Sequence[str],
    max_tokens: int,
) -> int:
    """How many sequences of the longest cell fit the model's context (a cell's prompt
    once, then per sequence its probe's text, every turn's max_tokens and the later turns'
    text: a group's cells share their framing, not their probes); MAX_FITS when the
    context is unknown."""
    n_ctx = backend.info.context_length
    if n_ctx <= 0:  # the context is unknown: nothing to size by
        return MAX_FITS
    fits = MAX_FITS
    for condition in conditions:
        for probe_id in probes:
            probe = scenario.probe(probe_id)
            shared = backend.count_tokens(
                first_turn_prompt(scenario, mode, backend, condition, probe_id)
            )
            text = [backend.count_tokens(turn) + TURN_OVERHEAD for turn in probe.turns]
            own = len(probe.turns) * max_tokens + sum(text)
            fits = min(fits, max(1, (n_ctx - shared - text[0]) // own))
    return fits


# No context bounds the batch: the backend's own limit does.
MAX_FITS = 1 << 30


# A group of cells decoded together holds about this many times `batch` trials: enough
# that the batch stays full but for the group's last steps (docs/benchmarks.md), few
# enough that a resume decodes little again.
GROUP_BATCHES = 8


def group_cells(batch: int, samples: int, probes: int) -> int:
    """How many consecutive cells of a condition one group holds (1 when one by one)."""
    if batch <= 1:
        return 1
    return max(1, min(probes, GROUP_BATCHES * batch // samples))


def seed_ids(scenario: Scenario) -> dict[str, str]:
    """The id each condition's trials are seeded by: its own, except the conditions of a
    steering sweep, which share the seeds of the condition written (scenario/steering.py),
    so every scale answers with the same seeds."""
    return {c.id: c.seed_condition for c in scenario.conditions if c.seed_condition != c.id}


def plan_trials(plan: Plan, seeds_of: Mapping[str, str] | None = None) -> list[TrialSpec]:
    """All trials of a plan in identity order (condition, replicate, probe, sample). The
    replicates of a condition share its seeds; `seeds_of` (`seed_ids`) names the id a
    condition is seeded by when it is not its own."""
    seeds_of = seeds_of or {}
    return [
        TrialSpec(c, p, s, trial_seed(plan.seed, seeds_of.get(c, c), p, s), r)
        for c, r in plan.arms
        for p in plan.probes
        for s in range(plan.samples)
    ]


def order_for_prefix_reuse(
    specs: Sequence[TrialSpec],
    prompts: Mapping[TrialKey, str],
    adapters: Mapping[Arm, str] | None = None,
) -> list[TrialSpec]:
    """Order trials so that neighbours share the longest prompt prefix.

    Sorting prompts lexicographically puts every prompt next to those it shares the most
    leading text with, so one condition's framing and demonstrations are evaluated once
    and then served from the engine's prefix cache for each of its probes.

    With `adapters` (arm -> LoRA adapter file, a training study), the trials of each
    adapter come together first (those without one, then each adapter in the order its
    arms come in `specs`), so each adapter is applied once; the prefix order holds
    within each group. The conditions of a training study share their prompts exactly,
    so without this the adapters would alternate from one trial to the next.
    """
    adapters = adapters or {}
    rank: dict[str | None, int] = {None: 0}
    for spec in specs:
        rank.setdefault(adapters.get(spec.arm), len(rank))
    return sorted(specs, key=lambda s: (rank[adapters.get(s.arm)], prompts[s.key], s.sample))


def batch_groups(
    plan: Plan, seeds_of: Mapping[str, str] | None = None
) -> list[tuple[TrialSpec, ...]]:
    """The groups of a plan, each decoded through `plan.batch` sequences at once: the
    trials of `plan.batch_cells` consecutive cells of one condition, in plan order
    (probe, then sample); the next trial waiting takes the place of a sequence that ends.

    Sessions from before groups spanning cells (`batch_cells` 0) batched each cell's
    samples in groups of `plan.batch`, in sample order, each group all at once.

    The composition depends on the plan alone, so a trial's text does not depend on what
    ran before or on what was left to do when a session resumed.
    """
    specs = plan_trials(plan, seeds_of)
    cells = [specs[start : start + plan.samples] for start in range(0, len(specs), plan.samples)]
    if plan.batch_cells == 0:
        size = plan.batch
        return [tuple(cell[i : i + size]) for cell in cells for i in range(0, len(cell), size)]
    per_condition = len(plan.probes)  # per arm: a replicate's cells are its own group
    groups: list[tuple[TrialSpec, ...]] = []
    for first in range(0, len(cells), per_condition):
        condition = cells[first : first + per_condition]
        for i in range(0, per_condition, plan.batch_cells):
            groups.append(
                tuple(spec for cell in condition[i : i + plan.batch_cells] for spec in cell)
            )
    return groups
