"""Likelihood probes: how much more likely one label's answers become under each framing.

Sessions hold, per arm (condition, and in a replicated training study its training run) ×
probe, the log-probability of every scored answer option (`Dataset.options`, from
`Session.option_cells`). From them:

- per arm and probe, the **log-odds** of label A against label B:
  `LME(logprobs of A's options) − LME(logprobs of B's options)`, LME the log-mean-exp
  (the log of the mean probability), so a label with more options is not favoured;
- per condition, the mean log-odds over its runs and probes, with a 95% interval from the
  hierarchical bootstrap (probes, training runs, options: `analysis.hierarchy`) and the
  spread between its runs (`analysis.replicates`);
- for every pair of conditions, the **paired contrast** over the probes scored under both
  (`analysis.option_contrasts`): intervals by level, a probe-level sign-flip p, a run-level
  permutation test, a verdict in words that names the unit;
- the interval half-width the design resolves (the power of the study), and the mean token
  count of each label's options (so length cannot silently explain a contrast).

Several sessions are pooled by arm and probe: an option scored in several sessions
(repeated runs of a scenario) contributes the mean of its log-probabilities. Pure
computation (numpy imported lazily: the `analysis` extra). See docs/analysis.md,
"Likelihood probes".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from persona_tui.analysis.hierarchy import Cell, Design
from persona_tui.analysis.option_contrasts import (
    ContrastInput,
    OptionContrast,
    Verdict,
    contrast,
    interval_nats,
    nats,
    one_run_note,
)
from persona_tui.analysis.records import ConditionInfo, Dataset, OptionRow
from persona_tui.analysis.replicates import Spread
from persona_tui.analysis.stats import BOOTSTRAP_RESAMPLES, Interval
from persona_tui.errors import PersonaError

__all__ = [
    "ConditionLogOdds",
    "LabelTokens",
    "OptionContrast",
    "OptionsAnalysis",
    "ProbeLogOdds",
    "Verdict",
    "analyze_options",
    "interval_nats",
    "log_mean_exp",
    "nats",
    "one_run_note",
]


@dataclass(frozen=True)
class ProbeLogOdds:
    """log-odds(A vs B) of one probe under one condition (the mean over its training runs;
    in `OptionsAnalysis.per_arm`, of one run), and how many options entered."""

    condition: str
    probe: str
    log_odds: float
    options_a: int
    options_b: int
    replicate: int = 0  # per_arm: the training run; per_probe: 0


@dataclass(frozen=True)
class ConditionLogOdds:
    """A condition's mean log-odds over its runs and probes, with the hierarchical interval
    and the spread of its runs' means (None for one run)."""

    condition: str
    label: str  # the framing's label from the scenario
    probes: int
    mean: float | None
    interval: Interval | None  # probes, training runs and options resampled
    runs: int = 1  # training runs (replicates); 1 for a condition without them
    run_spread: Spread | None = None  # of the runs' mean log-odds over the probes


@dataclass(frozen=True)
class LabelTokens:
    """How long a label's options are: distinct (probe, option) pairs and mean tokens."""

    label: str
    options: int
    mean_tokens: float


@dataclass(frozen=True)
class OptionsAnalysis:
    label_a: str
    label_b: str
    labels_given: bool  # chosen by the caller (`--labels`) rather than by default
    sessions: tuple[str, ...]
    conditions: tuple[ConditionInfo, ...]
    probes: tuple[str, ...]  # probes with a log-odds under at least one condition
    per_probe: tuple[ProbeLogOdds, ...]  # per condition (mean over its runs) and probe
    means: tuple[ConditionLogOdds, ...]
    contrasts: tuple[OptionContrast, ...]
    tokens: tuple[LabelTokens, ...]  # every label options use, A and B first
    notes: tuple[str, ...] = ()
    per_arm: tuple[ProbeLogOdds, ...] = ()  # per training run and probe

    @property
    def title(self) -> str:
        return f"log-odds of '{self.label_a}' vs '{self.label_b}'"

    @property
    def replicated(self) -> bool:
        """Whether a condition has several training runs."""
        return any(m.runs > 1 for m in self.means)

    def log_odds(self, condition: str, probe: str) -> float | None:
        return next(
            (x.log_odds for x in self.per_probe if x.condition == condition and x.probe == probe),
            None,
        )

    def mean(self, condition: str) -> ConditionLogOdds | None:
        return next((m for m in self.means if m.condition == condition), None)

    @property
    def resolvable(self) -> float | None:
        """The widest contrast half-width: differences this study can tell from none."""
        widths = [c.half_width for c in self.contrasts if c.half_width is not None]
        return max(widths) if widths else None

    @property
    def power_line(self) -> str:
        """The power of the study in words (what a "no difference shown" means)."""
        resolvable = self.resolvable
        widest = max(self.contrasts, key=lambda c: c.half_width or 0.0, default=None)
        n = max((c.probes for c in self.contrasts), default=len(self.probes))
        if resolvable is None or widest is None:
            return f"with {n} probe(s) this study cannot resolve differences between framings"
        return (
            f"with {widest.unit or f'{n} probes'} this study resolves differences of about "
            f"±{nats(resolvable)} nats (the widest half-width of the 95% intervals); a smaller "
            "true difference would read as 'no difference shown'"
        )


def log_mean_exp(values: Sequence[float]) -> float:
    """log(mean(exp(values))), computed stably (−inf for no probability at all)."""
    if not values:
        raise ValueError("log_mean_exp of no values")
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(math.fsum(math.exp(v - top) for v in values) / len(values))


# ------------------------------------------------------------------ the analysis


def analyze_options(
    dataset: Dataset,
    labels: tuple[str, str] | None = None,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> OptionsAnalysis:
    """The likelihood-probe statistics of `dataset`; PersonaError when there are none.

    `labels=(A, B)` compares A against B; by default A is the first label marked
    `bad = true` that options use and B the first other label options use (in the
    scenario's label order).
    """
    rows = dataset.options
    if not rows:
        raise PersonaError("the sessions hold no scored answer options")
    used = list(dict.fromkeys(r.label for r in rows))
    order = [label.id for label in dataset.labels]
    used.sort(key=lambda label: order.index(label) if label in order else len(order))
    notes = list(dataset.warnings)
    if labels is not None:
        label_a, label_b = labels
        for label in (label_a, label_b):
            if label not in used:
                raise PersonaError(
                    f"no option has the label {label!r}; options use: {', '.join(used)}"
                )
        if label_a == label_b:
            raise PersonaError(f"compare two different labels, not {label_a!r} with itself")
    else:
        if len(used) < 2:
            raise PersonaError(
                f"every option has the label {used[0]!r}: log-odds need options of two labels"
            )
        bad = {label.id for label in dataset.labels if label.bad}
        label_a = next((label for label in used if label in bad), used[0])
        label_b = next(label for label in used if label != label_a)
        if label_a not in bad:
            notes.append(
                f"no option label is marked bad = true: comparing '{label_a}' with '{label_b}' "
                "(the first two in the scenario's order; choose with --labels A,B)"
            )

    # Pool sessions: each option's log-probability averaged over the sessions that scored it.
    pooled: dict[tuple[str, int, str], dict[tuple[str, str], list[float]]] = {}
    for row in rows:
        cell = pooled.setdefault((row.condition, row.replicate, row.probe), {})
        cell.setdefault((row.option, row.label), []).append(row.logprob)
    notes += _pooling_notes(rows, pooled)

    condition_ids = [c.id for c in dataset.conditions]
    probe_ids = [p.id for p in dataset.probes]
    arms = sorted(
        {(c, r) for c, r, _ in pooled},
        key=lambda arm: (condition_ids.index(arm[0]) if arm[0] in condition_ids else 0, arm[1]),
    )
    per_arm: list[ProbeLogOdds] = []
    options_of: dict[tuple[str, int, str], tuple[list[tuple[str, float]], list[tuple[str, float]]]]
    options_of = {}
    skipped = 0
    for condition, replicate in arms:
        for probe in probe_ids:
            scored = pooled.get((condition, replicate, probe))
            if scored is None:
                continue
            a = [(o, math.fsum(v) / len(v)) for (o, lab), v in scored.items() if lab == label_a]
            b = [(o, math.fsum(v) / len(v)) for (o, lab), v in scored.items() if lab == label_b]
            value = (
                log_mean_exp([x for _, x in a]) - log_mean_exp([x for _, x in b])
                if a and b
                else math.nan
            )
            if not math.isfinite(value):
                skipped += 1
                continue
            options_of[(condition, replicate, probe)] = (a, b)
            per_arm.append(ProbeLogOdds(condition, probe, value, len(a), len(b), replicate))
    if skipped:
        notes.append(
            f"{skipped} condition × probe cell(s) left out: no options of '{label_a}' or of "
            f"'{label_b}', or a probability of 0"
        )
    log_odds = {(x.condition, x.replicate, x.probe): x.log_odds for x in per_arm}
    scored_arms = {(c, r) for c, r, _ in log_odds}
    units: dict[str, tuple[int, ...]] = {}
    for condition, replicate in arms:
        if (condition, replicate) in scored_arms:
            units[condition] = (*units.get(condition, ()), replicate)
    conditions = tuple(c for c in dataset.conditions if c.id in units)
    present = {x.probe for x in per_arm}
    probes = tuple(p for p in probe_ids if p in present)
    # A condition's probes: those every one of its runs scored.
    complete = {
        c.id: [p for p in probes if all((c.id, r, p) in log_odds for r in units[c.id])]
        for c in conditions
    }
    partial = sum(
        1
        for c in conditions
        for p in probes
        if p not in complete[c.id]
        if any((c.id, r, p) in log_odds for r in units[c.id])
    )
    if partial:
        notes.append(
            f"{partial} condition × probe cell(s) left out: not scored under every training "
            "run of the condition"
        )
    design, ragged = _design(units, options_of)
    if ragged:
        notes.append(
            f"{ragged} probe(s) do not have the same options under every condition and run: "
            "their options are not resampled (the interval's options level skips them)"
        )
    first_arm: dict[tuple[str, str], ProbeLogOdds] = {}
    for x in per_arm:
        first_arm.setdefault((x.condition, x.probe), x)
    per_probe = []
    for c in conditions:
        runs = units[c.id]
        for p in complete[c.id]:
            first = first_arm[(c.id, p)]
            value = math.fsum(log_odds[(c.id, r, p)] for r in runs) / len(runs)
            per_probe.append(ProbeLogOdds(c.id, p, value, first.options_a, first.options_b))
    trained = frozenset(c for s in dataset.sessions for c in s.adapter_conditions)
    data = ContrastInput(design, log_odds, trained, resamples)
    means = []
    for c in conditions:
        own = complete[c.id]
        mean, interval, run_spread = data.condition_mean(c.id, own)
        means.append(
            ConditionLogOdds(c.id, c.label, len(own), mean, interval, len(units[c.id]), run_spread)
        )
    contrasts = []
    for i, earlier in enumerate(conditions):
        for later in conditions[i + 1 :]:
            shared = [p for p in complete[later.id] if p in complete[earlier.id]]
            contrasts.append(contrast(data, later.id, earlier.id, shared))
    if len(conditions) < 2:
        notes.append("only one condition has options scored: there is nothing to contrast")
    if any(len(runs) > 1 for runs in units.values()):
        notes.append(
            "a replicated condition's log-odds are the mean over its training runs; its "
            "interval resamples the runs too (docs/analysis.md)"
        )
    tokens = _tokens(dataset, [label_a, label_b, *(u for u in used if u not in (label_a, label_b))])
    length_note = _length_note(tokens, label_a, label_b)
    if length_note:
        notes.append(length_note)
    return OptionsAnalysis(
        label_a=label_a,
        label_b=label_b,
        labels_given=labels is not None,
        sessions=tuple(dict.fromkeys(r.session_id for r in rows)),
        conditions=conditions,
        probes=probes,
        per_probe=tuple(per_probe),
        means=tuple(means),
        contrasts=tuple(contrasts),
        tokens=tokens,
        notes=tuple(notes),
        per_arm=tuple(per_arm),
    )


def _pooling_notes(
    rows: Sequence[OptionRow],
    pooled: dict[tuple[str, int, str], dict[tuple[str, str], list[float]]],
) -> list[str]:
    notes = []
    spread_ = max(
        (max(v) - min(v) for cell in pooled.values() for v in cell.values() if len(v) > 1),
        default=0.0,
    )
    if spread_ > 1e-6:
        notes.append(
            "an option's log-probability differs between sessions (by up to "
            f"{spread_:.3g} nats): each option's values were averaged before the log-mean-exp"
        )
    models = sorted({r.model_sha256 for r in rows})
    if len(models) > 1:
        names = ", ".join(sorted({r.model_name for r in rows}))
        notes.append(f"options scored by different models ({names}) are pooled by probe")
    return notes


Scored = tuple[list[tuple[str, float]], list[tuple[str, float]]]


def _design(
    units: dict[str, tuple[int, ...]], options_of: dict[tuple[str, int, str], Scored]
) -> tuple[Design, int]:
    """The bootstrap's cells, options in one order per probe; and how many probes are
    ragged (options differ between arms, or a probability of 0): each arm's cell there is
    its LME alone, so the options level leaves the probe as it is."""
    by_probe: dict[str, list[tuple[str, int]]] = {}
    for condition, replicate, probe in options_of:
        by_probe.setdefault(probe, []).append((condition, replicate))
    cells: dict[tuple[str, int, str], Cell] = {}
    counts: dict[str, tuple[int, int]] = {}
    ragged = 0
    for probe, arms in by_probe.items():
        scored = [options_of[(c, r, probe)] for c, r in arms]
        order_a = sorted({o for a, _ in scored for o, _ in a})
        order_b = sorted({o for _, b in scored for o, _ in b})
        aligned = all(
            sorted(o for o, _ in a) == order_a
            and sorted(o for o, _ in b) == order_b
            and all(math.isfinite(x) for _, x in (*a, *b))
            for a, b in scored
        )
        ragged += not aligned
        for (c, r), (a, b) in zip(arms, scored, strict=True):
            if aligned:
                da, db = dict(a), dict(b)
                cells[(c, r, probe)] = Cell(
                    tuple(da[o] for o in order_a), tuple(db[o] for o in order_b)
                )
            else:
                cells[(c, r, probe)] = Cell(
                    (log_mean_exp([x for _, x in a]),), (log_mean_exp([x for _, x in b]),)
                )
            counts[probe] = (len(cells[(c, r, probe)].a), len(cells[(c, r, probe)].b))
    return Design(units, cells, counts), ragged


def _tokens(dataset: Dataset, labels: Sequence[str]) -> tuple[LabelTokens, ...]:
    """Mean token count per label over its distinct options (probe, option id)."""
    lengths: dict[str, dict[tuple[str, str], list[int]]] = {}
    for row in dataset.options:
        lengths.setdefault(row.label, {}).setdefault((row.probe, row.option), []).append(
            row.n_tokens
        )
    out = []
    for label in labels:
        options = lengths.get(label, {})
        if not options:
            continue
        per_option = [math.fsum(v) / len(v) for v in options.values()]
        out.append(LabelTokens(label, len(per_option), math.fsum(per_option) / len(per_option)))
    return tuple(out)


def _length_note(tokens: Sequence[LabelTokens], label_a: str, label_b: str) -> str:
    found = {t.label: t for t in tokens}
    a, b = found.get(label_a), found.get(label_b)
    if a is None or b is None or min(a.mean_tokens, b.mean_tokens) <= 0:
        return ""
    ratio = max(a.mean_tokens, b.mean_tokens) / min(a.mean_tokens, b.mean_tokens)
    if ratio < 1.25:
        return ""
    longer, shorter = (a, b) if a.mean_tokens > b.mean_tokens else (b, a)
    return (
        f"'{longer.label}' options are longer than '{shorter.label}' ones "
        f"({longer.mean_tokens:.1f} vs {shorter.mean_tokens:.1f} tokens on average): a "
        "condition's mean log-odds partly reflects length; the contrasts compare the same "
        "options under two framings, so length cancels there"
    )
