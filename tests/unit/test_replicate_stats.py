"""Statistics that respect the design: training runs and options as levels of the interval,
the spread between runs, the run-level permutation test, and the unit in the verdict."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest

from persona_tui.analysis.hierarchy import (
    PROBES_AND_REPLICATES,
    PROBES_ONLY,
    hierarchical_interval,
)
from persona_tui.analysis.option_contrasts import unit_sentence
from persona_tui.analysis.options import OptionsAnalysis, analyze_options
from persona_tui.analysis.records import dataset_of
from persona_tui.analysis.replicates import label_permutation_p, replicate_test, spread
from persona_tui.analysis.stats import bootstrap_mean_interval
from tests.analysis_sessions import OptionSpec, replicated_options_session
from tests.unit.test_options_analysis import cells_from

pytest.importorskip("numpy")

PROBES = 8


def arm_cells(
    values: dict[tuple[str, int], Sequence[float]], equal_options: bool = False
) -> dict[tuple[str, int, str], list[OptionSpec]]:
    """Cells where probe i of arm (condition, replicate) has log-odds values[arm][i]."""
    flat = cells_from({f"{c}|{r}": v for (c, r), v in values.items()})
    out: dict[tuple[str, int, str], list[OptionSpec]] = {}
    for (arm, probe), options in flat.items():
        condition, replicate = arm.split("|")
        if equal_options:  # every option of a label the same: the label's LME is it
            level = {label: lp for _, label, lp, _ in options}
            options = [(o, lab, level[lab], n) for o, lab, _, n in options]
        out[(condition, int(replicate), probe)] = list(options)
    return out


def study(
    shifts: dict[str, Sequence[float]], seed: int = 3, equal_options: bool = False
) -> OptionsAnalysis:
    """baseline (untouched) and the conditions of `shifts`, one run per shift: run k of a
    condition is the baseline's probes moved by shifts[condition][k] plus probe noise."""
    rng = random.Random(seed)
    base = [rng.gauss(-4.0, 1.0) for _ in range(PROBES)]
    noise = [rng.gauss(0.0, 0.3) for _ in range(PROBES)]
    values: dict[tuple[str, int], Sequence[float]] = {("baseline", 0): base}
    for condition, runs in shifts.items():
        numbered = len(runs) > 1
        for k, shift in enumerate(runs):
            values[(condition, k + 1 if numbered else 0)] = [
                b + shift + e for b, e in zip(base, noise, strict=True)
            ]
    cells = arm_cells(values, equal_options)
    trained = [c for c in shifts]
    return analyze_options(dataset_of([replicated_options_session(cells, trained)]))


def contrast_of(result: OptionsAnalysis, condition: str, reference: str):  # type: ignore[no-untyped-def]
    return next(c for c in result.contrasts if (c.condition, c.reference) == (condition, reference))


def test_disagreeing_runs_widen_the_interval() -> None:
    result = study({"framed": [0.2, 1.0, 1.8]})
    x = contrast_of(result, "framed", "baseline")
    assert x.runs == (3, 1) and x.difference == pytest.approx(1.0, abs=0.3)
    assert x.interval is not None and x.options_interval is not None
    probe_half, options_half, full_half = x.half_widths
    assert probe_half is not None and options_half is not None and full_half is not None
    assert full_half > options_half + 0.2  # the runs' spread (±0.8 nats) is in the interval
    assert x.run_spread is not None and x.run_spread.units == 3
    assert x.run_spread.high - x.run_spread.low == pytest.approx(1.6)
    assert x.run_spread.sd == pytest.approx(0.8)
    mean = result.mean("framed")
    assert mean is not None and mean.runs == 3 and mean.run_spread is not None
    assert mean.run_spread.sd == pytest.approx(0.8)
    assert result.mean("baseline") is not None and result.mean("baseline").runs == 1  # type: ignore[union-attr]
    assert result.replicated
    assert x.unit == "3 training runs of framed × 8 probes × 4 options"
    assert x.sentence.endswith("(3 training runs of framed × 8 probes × 4 options)")
    # Three runs against the untouched model: 8 sign patterns, never p < 0.05.
    assert x.run_test is not None and x.run_test.method == "run-level sign flip"
    assert x.run_test.p_value == pytest.approx(0.25) and x.run_test.smallest_p == 0.25
    assert "cannot reach p < 0.05" in x.explanation and "8 sign patterns" in x.explanation
    assert not x.single_runs


def test_identical_runs_give_exactly_the_probes_and_options_interval() -> None:
    result = study({"framed": [1.0, 1.0, 1.0], "other": [0.5, 0.5, 0.5]})
    for x in result.contrasts:
        assert x.interval is not None and x.interval == x.options_interval
        assert x.run_spread is not None and x.run_spread.high - x.run_spread.low < 1e-9
    for m in result.means:
        assert m.interval is not None
    # The condition means too: one run alone has the probes and options interval.
    framed = result.mean("framed")
    assert framed is not None and framed.run_spread is not None
    assert framed.run_spread.sd == pytest.approx(0.0, abs=1e-12)


def test_equal_options_leave_out_nothing_and_differing_options_widen() -> None:
    result = study({"framed": [0.2, 1.0, 1.8]}, equal_options=True)
    x = contrast_of(result, "framed", "baseline")
    rng = random.Random(3)
    base = [rng.gauss(-4.0, 1.0) for _ in range(PROBES)]
    noise = [rng.gauss(0.0, 0.3) for _ in range(PROBES)]
    values = {("baseline", 0): base}
    for k, shift in enumerate([0.2, 1.0, 1.8]):
        values[("framed", k + 1)] = [b + shift + e for b, e in zip(base, noise, strict=True)]
    session = replicated_options_session(arm_cells(values, equal_options=True), ["framed"])
    probes = list(result.probes)
    without_options = _interval(session, probes, PROBES_AND_REPLICATES)
    assert x.interval == without_options
    assert x.options_interval == _interval(session, probes, PROBES_ONLY)
    # Options whose wording reacts differently to the framing: the options level adds width
    # (a uniform offset between options cancels in a contrast, since options are paired).
    cells = arm_cells({("baseline", 0): base, ("framed", 0): [b + 1.0 for b in base]})
    for (condition, _, _), options in cells.items():
        if condition == "framed":
            options[2] = (options[2][0], options[2][1], options[2][2] + 1.5, options[2][3])
    reacting = analyze_options(dataset_of([replicated_options_session(cells, ["framed"])]))
    y = contrast_of(reacting, "framed", "baseline")
    probe_half, options_half, full_half = y.half_widths
    assert probe_half is not None and options_half is not None
    assert options_half > probe_half + 0.1 and full_half == options_half


def _interval(session, probes, levels):  # type: ignore[no-untyped-def]
    """The hierarchical interval of framed − baseline at `levels`, on the design the
    analysis of `session` builds."""
    from persona_tui.analysis import options as options_module

    captured = {}
    original = options_module.ContrastInput

    def spy(design, *args, **kwargs):  # type: ignore[no-untyped-def]
        captured["design"] = design
        return original(design, *args, **kwargs)

    options_module.ContrastInput = spy  # type: ignore[assignment,misc]
    try:
        analyze_options(dataset_of([session]))
    finally:
        options_module.ContrastInput = original  # type: ignore[misc]
    return hierarchical_interval(captured["design"], ("framed", "baseline"), probes, levels)


def test_one_unit_conditions_keep_todays_probe_interval_and_say_one_run() -> None:
    result = study({"framed": [1.0]})
    x = contrast_of(result, "framed", "baseline")
    differences = [
        result.log_odds("framed", p) - result.log_odds("baseline", p)  # type: ignore[operator]
        for p in result.probes
    ]
    assert x.probe_interval == bootstrap_mean_interval(differences)
    assert x.runs == (1, 1) and x.run_test is None and x.run_spread is None
    assert x.single_runs == ("framed",)
    assert "framed is one training run (one LoRA adapter)" in x.explanation
    assert x.unit == "1 training run of framed × 8 probes × 4 options"
    assert not result.replicated


def test_label_permutation_exact_values() -> None:
    # 3 vs 3, completely separated: only the two extreme splits of 20 reach it.
    test = label_permutation_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert (test.p_value, test.exact, test.smallest_p) == (pytest.approx(0.1), True, 0.1)
    assert not test.can_reach and "20 splits" in test.limit and "3 vs 3" in test.limit
    # By hand over every split for a mixed case.
    a, b = [0.3, 1.1, -0.2, 0.9], [0.1, -0.5, 0.4]
    pooled = a + b
    observed = abs(sum(a) / 4 - sum(b) / 3)
    hits = 0
    splits = list(itertools.combinations(range(7), 4))
    for chosen in splits:
        x = [pooled[i] for i in chosen]
        y = [pooled[i] for i in range(7) if i not in chosen]
        hits += abs(sum(x) / 4 - sum(y) / 3) >= observed - 1e-12
    found = label_permutation_p(a, b)
    assert found.p_value == pytest.approx(hits / 35) and found.smallest_p == pytest.approx(1 / 35)
    # 5 vs 5 can reach it: 252 splits, smallest p 2/252.
    assert label_permutation_p([1.0] * 5, [2.0] * 5).can_reach


def test_replicate_test_chooses_sign_flip_against_a_fixed_reference() -> None:
    sign = replicate_test([1.0, 1.2, 0.9], [0.0], (False, True))
    assert sign is not None and sign.method == "run-level sign flip"
    assert sign.p_value == pytest.approx(0.25) and sign.runs == (3, 1)
    assert "3 training runs against a condition without training" in sign.limit
    five = replicate_test([1.0, 1.2, 0.9, 1.1, 1.3], [0.0], (False, True))
    assert five is not None and five.p_value == pytest.approx(2 / 32) and not five.can_reach
    six = replicate_test([1.0, 1.2, 0.9, 1.1, 1.3, 1.4], [0.0], (False, True))
    assert six is not None and six.p_value == pytest.approx(2 / 64) and six.can_reach
    # A trained single run as reference has training noise: labels are permuted.
    perm = replicate_test([1.0, 1.2, 0.9], [0.0], (False, False))
    assert perm is not None and perm.method == "run-label permutation"
    assert perm.p_value == pytest.approx(0.25)  # 1 of 4 splits puts 0.0 alone
    assert replicate_test([1.0], [0.0], (False, True)) is None


def test_two_replicated_framings_name_the_unit_and_permute_runs() -> None:
    result = study({"framed": [0.9, 1.0, 1.1], "other": [0.0, 0.1, -0.1]})
    x = contrast_of(result, "other", "framed")
    assert x.unit == "3 training runs per framing × 8 probes × 4 options"
    assert x.run_test is not None and x.run_test.method == "run-label permutation"
    assert x.run_test.p_value == pytest.approx(0.1)
    assert x.run_spread is not None and x.run_spread.units == 9
    assert "3 vs 3 training runs" in x.explanation and "smallest p is 0.1" in x.explanation


def test_unit_sentence_forms() -> None:
    trained = frozenset({"learns", "plays"})
    four = [(2, 2)] * 26
    assert (
        unit_sentence((("plays", 3), ("learns", 3)), trained, 26, [(6, 6)] * 26)
        == "3 training runs per framing × 26 probes × 12 options"
    )
    assert (
        unit_sentence((("plays", 5), ("learns", 3)), trained, 26, four)
        == "5 training runs of plays, 3 training runs of learns × 26 probes × 4 options"
    )
    assert unit_sentence((("a", 1), ("b", 1)), frozenset(), 7, [(4, 4), (3, 4)]) == (
        "7 probes × 7-8 options"
    )


def test_spread() -> None:
    found = spread([1.0, 2.0, 4.0])
    assert found is not None and (found.units, found.low, found.high) == (3, 1.0, 4.0)
    assert found.sd == pytest.approx(1.5275252316519468)
    one = spread([2.0])
    assert one is not None and one.sd is None
    assert spread([]) is None


def test_labels_pool_a_conditions_training_runs_and_say_so() -> None:
    import dataclasses

    from persona_tui.analysis.summary import analyze
    from persona_tui.session.model import Trial
    from tests.analysis_sessions import annotation

    cells = arm_cells(
        {("baseline", 0): [0.0] * 5, ("framed", 1): [1.0] * 5, ("framed", 2): [1.0] * 5}
    )
    session = replicated_options_session(cells, ["framed"])
    trials = [
        Trial(
            c,
            p,
            0,
            1,
            "<prompt>",
            "answer",
            "stop",
            3,
            2,
            "2026-01-01T00:00:01+00:00",
            0.1,
            annotations=(annotation("alice", "cruel" if c == "framed" else "ok"),),
            replicate=r,
        )
        for c, r, p in cells
    ]
    dataset = dataset_of([dataclasses.replace(session, trials=trials)])
    assert sorted({(r.condition, r.replicate) for r in dataset.records}) == [
        ("baseline", 0),
        ("framed", 1),
        ("framed", 2),
    ]
    assert len(dataset.by_trial) == 15  # the runs' trials of one probe and sample stay apart
    result = analyze(dataset)
    rate = result.rate("framed", "cruel")
    assert rate is not None and (rate.k, rate.n) == (10, 10)
    assert any("pool the training runs of framed (2 training runs)" in n for n in result.notes)
    plain = dataset_of(
        [
            dataclasses.replace(
                session,
                trials=[dataclasses.replace(t, replicate=0) for t in trials if t.replicate < 2],
            )
        ]
    )
    assert not any("training runs" in n for n in analyze(plain).notes)


def test_kept_and_recomputed_draws_give_the_same_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_tui.analysis import hierarchy

    kept = study({"framed": [0.2, 1.0, 1.8], "other": [0.0, 0.3, -0.3]})
    monkeypatch.setattr(hierarchy, "_KEEP_LIMIT", 0)  # every interval computes its own blocks
    again = study({"framed": [0.2, 1.0, 1.8], "other": [0.0, 0.3, -0.3]})
    assert again.contrasts == kept.contrasts and again.means == kept.means
