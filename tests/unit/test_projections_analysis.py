"""Trait-projection statistics and export, checked against hand computations (and numpy /
scipy for the correlations): planted effects are found with the right sign, a null's
interval covers 0, training runs are a level of the bootstrap."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

import pytest

from persona_tui.analysis.export import export_projections_text
from persona_tui.analysis.options import analyze_options
from persona_tui.analysis.projections import analyze_projections, correlation, ranks
from persona_tui.analysis.records import dataset_of
from persona_tui.analysis.report import render
from persona_tui.analysis.stats import bootstrap_mean_interval, sign_flip_p
from persona_tui.analysis.summary import analyze
from persona_tui.errors import PersonaError
from tests.analysis_sessions import options_session, projection_session

np = pytest.importorskip("numpy")
scipy_stats = pytest.importorskip("scipy.stats")

PROBES = [f"p{i}" for i in range(1, 9)]
BASE = [0.1, -0.3, 0.5, 0.0, 0.2, -0.1, 0.4, -0.2]


def two_framings(shift: Sequence[float]) -> dict[tuple[str, int, str], list[float]]:
    """Two samples per cell, ±0.1 around the probe's level; framed = baseline + shift."""
    trials = {}
    for probe, base, extra in zip(PROBES, BASE, shift, strict=True):
        trials[("baseline", 0, probe)] = [base - 0.1, base + 0.1]
        trials[("framed", 0, probe)] = [base + extra - 0.1, base + extra + 0.1]
    return trials


def test_a_planted_shift_is_found_with_its_sign_and_the_hand_computed_values() -> None:
    shift = [1.0, 1.2, 0.8, 1.1, 0.9, 1.3, 0.7, 1.0]
    result = analyze_projections(dataset_of([projection_session(two_framings(shift))]))
    (t,) = result.traits
    assert (t.trait, t.layer, t.kind, t.samples) == ("malice", 3, "response", 32)
    base_mean = t.mean("baseline")
    framed_mean = t.mean("framed")
    assert base_mean is not None and framed_mean is not None
    # mean over probes of the mean over the two samples: sum(BASE) / 8 = 0.6 / 8
    assert base_mean.mean == pytest.approx(0.075, abs=1e-12)
    assert framed_mean.mean == pytest.approx(0.075 + 1.0, abs=1e-12)
    assert base_mean.probes == 8 and base_mean.runs == 1 and base_mean.run_spread is None
    (x,) = t.contrasts
    assert (x.condition, x.reference, x.probes, x.higher) == ("framed", "baseline", 8, 8)
    assert x.difference == pytest.approx(1.0, abs=1e-12)
    differences = [
        (b + s - 0.1 + b + s + 0.1) / 2 - (b - 0.1 + b + 0.1) / 2
        for b, s in zip(BASE, shift, strict=True)
    ]
    # no options, no runs: the full interval is the probe bootstrap of the differences
    probe_only = bootstrap_mean_interval(differences)
    assert x.interval is not None and probe_only is not None
    assert x.interval.low == pytest.approx(probe_only.low, abs=1e-9)
    assert x.interval.high == pytest.approx(probe_only.high, abs=1e-9)
    assert x.interval.low > 0
    assert x.p_value == pytest.approx(2 / 2**8)  # every sign the same: 2 of 256 patterns
    assert sign_flip_p(differences) == (x.p_value, True)
    assert x.verdict == "higher"
    assert x.sentence.startswith("higher under framed than baseline: +1.00 [")
    assert x.sentence.endswith("(8 probes)")  # the unit: no options level here
    assert x.run_test is None and x.unit == "8 probes"


def test_a_null_gives_an_interval_covering_zero() -> None:
    shift = [0.3, -0.3, 0.2, -0.2, 0.1, -0.1, 0.25, -0.25]
    (t,) = analyze_projections(dataset_of([projection_session(two_framings(shift))])).traits
    (x,) = t.contrasts
    assert x.difference == pytest.approx(0.0, abs=1e-12)
    assert x.interval is not None and x.interval.low < 0 < x.interval.high
    assert x.verdict == "no difference shown"
    assert x.higher == 4
    assert "this contrast resolves differences of about ±" in x.explanation


def test_training_runs_are_a_level_of_the_interval() -> None:
    offsets = {1: -0.5, 2: 0.0, 3: 0.5}
    probes = PROBES[:6]
    trials: dict[tuple[str, int, str], list[float]] = {}
    for probe, base in zip(probes, BASE, strict=False):
        trials[("baseline", 0, probe)] = [base]
        for run, offset in offsets.items():
            trials[("learns", run, probe)] = [base + 1.0 + offset]
    (t,) = analyze_projections(dataset_of([projection_session(trials)])).traits
    learns = t.mean("learns")
    assert learns is not None and learns.runs == 3
    base_mean = sum(BASE[:6]) / 6
    assert learns.mean == pytest.approx(base_mean + 1.0, abs=1e-12)
    assert learns.run_spread is not None and learns.run_spread.sd == pytest.approx(0.5)
    assert t.replicated
    (x,) = t.contrasts
    assert (x.condition, x.reference, x.runs) == ("learns", "baseline", (3, 1))
    assert x.difference == pytest.approx(1.0, abs=1e-12)
    # per probe the mean over runs is exactly base + 1: the probes alone see no spread ...
    assert x.probe_interval is not None
    assert x.probe_interval.low == pytest.approx(1.0) and x.probe_interval.high == pytest.approx(
        1.0
    )
    # ... the training runs do: the full interval resamples them
    assert x.interval is not None and x.interval.low < 1.0 - 0.1 and x.interval.high > 1.0 + 0.1
    assert x.run_test is not None and x.run_spread is not None
    assert x.unit == "3 training runs of learns × 6 probes"
    assert any(
        "resamples the runs too" in note
        for note in analyze_projections(dataset_of([projection_session(trials)])).notes
    )


def test_prompt_projections_agree_with_the_option_log_odds() -> None:
    # per condition (mean over 2 probes): projections 1, 2, 3; log-odds 1, 2, 4
    cells = {
        ("baseline", 0, "p1"): (0.5, 0.5),
        ("baseline", 0, "p2"): (1.5, 1.5),
        ("framed", 0, "p1"): (1.0, 1.0),
        ("framed", 0, "p2"): (3.0, 3.0),
        ("third", 0, "p1"): (2.0, 3.0),
        ("third", 0, "p2"): (4.0, 5.0),
    }
    dataset = dataset_of([projection_session({}, cells)])
    options = analyze_options(dataset)
    (t,) = analyze_projections(dataset, options=options).traits
    assert t.kind == "prompt" and t.samples == 6
    assert [m.mean for m in t.means] == [1.0, 2.0, 3.0]
    by_conditions, by_cells = t.agreement
    assert by_conditions.what == "option log-odds 'cruel' vs 'ok'"
    assert (by_conditions.level, by_conditions.n) == ("conditions", 3)
    # by hand: x = 1, 2, 3; y = 1, 2, 4: sxy = 3, sxx = 2, syy = 14/3
    assert by_conditions.pearson == pytest.approx(3 / math.sqrt(2 * 14 / 3))
    assert by_conditions.spearman == pytest.approx(1.0)
    assert by_conditions.too_few
    assert "too few conditions for a correlation to mean anything" in by_conditions.sentence
    xs = [v for v, _ in cells.values()]
    ys = [o for _, o in cells.values()]
    assert (by_cells.level, by_cells.n) == ("condition × probe cells", 6)
    assert by_cells.pearson == pytest.approx(float(np.corrcoef(xs, ys)[0, 1]))
    assert by_cells.spearman == pytest.approx(float(scipy_stats.spearmanr(xs, ys)[0]))
    assert not by_cells.too_few


def test_response_projections_agree_with_the_label_rates() -> None:
    # projections 0, 1, 2 by condition; 'cruel' on 1, 2 and 3 of each condition's 4 trials
    cruel = {
        "baseline": (("cruel", "ok"), ("ok", "ok")),
        "framed": (("cruel", "ok"), ("cruel", "ok")),
    }
    cruel["third"] = (("cruel", "cruel"), ("cruel", "ok"))
    trials = {}
    labels = {}
    for level, condition in enumerate(("baseline", "framed", "third")):
        for probe, chosen in zip(("p1", "p2"), cruel[condition], strict=True):
            trials[(condition, 0, probe)] = [float(level), float(level)]
            labels[(condition, 0, probe)] = list(chosen)
    dataset = dataset_of([projection_session(trials, labels=labels)])
    analysis = analyze(dataset)
    rates = [analysis.rate(c, "cruel") for c in ("baseline", "framed", "third")]
    assert [r.rate if r else None for r in rates] == [0.25, 0.5, 0.75]
    (t,) = analyze_projections(dataset, analysis=analysis).traits
    (agreement,) = t.agreement
    assert (agreement.what, agreement.n) == ("'cruel' label rate", 3)
    # x = 0, 1, 2 and y = 0.25, 0.5, 0.75 lie on a line
    assert agreement.pearson == pytest.approx(1.0)
    assert agreement.spearman == pytest.approx(1.0)


def test_correlation_helpers_by_hand() -> None:
    assert ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    two = correlation("x", "conditions", [(1.0, 2.0), (2.0, 3.0)])
    assert two.pearson is None and two.n == 2
    assert two.sentence == "no correlation with n = 2 conditions (it needs at least 3)"
    flat = correlation("x", "conditions", [(1.0, 2.0), (2.0, 2.0), (3.0, 2.0)])
    assert flat.pearson is None
    assert flat.sentence == "no correlation: one side is the same for all 3 conditions"
    falling = correlation("x", "cells", [(float(i), -2.0 * i) for i in range(6)])
    assert falling.pearson == pytest.approx(-1.0) and not falling.too_few
    assert falling.sentence == "r = −1.00, ρ = −1.00 (n = 6 cells)"


def test_no_projections_is_an_error_and_the_report_has_no_section() -> None:
    session = options_session({("baseline", "p1"): [("a", "cruel", -1.0, 1), ("b", "ok", -2.0, 1)]})
    with pytest.raises(PersonaError, match="no trait projections"):
        analyze_projections(dataset_of([session]))


def test_the_report_has_a_trait_projections_section() -> None:
    shift = [1.0, 1.2, 0.8, 1.1, 0.9, 1.3, 0.7, 1.0]
    session = projection_session(two_framings(shift), steering={"framed": 2.0})
    projections = analyze_projections(dataset_of([session]))
    text = render(None, "text", None, projections)
    assert "Trait projections: malice at layer 3, responses (mean over tokens) by condition" in text
    assert "framed vs baseline: higher under framed than baseline: +1.00" in text
    assert "+2" in text  # the steered condition's scale
    markdown = render(None, "markdown", None, projections)
    assert "## Trait projections: malice at layer 3" in markdown


def test_export_rows_one_per_trial_and_cell_and_trait() -> None:
    session = projection_session(
        {("framed", 0, "p1"): [0.25, -0.5]},
        {("framed", 0, "p1"): (1.5, 0.0)},
        steering={"framed": -1.5},
    )
    rows = dataset_of([session]).projections
    assert len(rows) == 3
    text = "".join(export_projections_text(rows, "csv"))
    table = list(csv.DictReader(io.StringIO(text)))
    assert [(r["kind"], r["sample"], r["projection"]) for r in table] == [
        ("response", "0", "0.25"),
        ("response", "1", "-0.5"),
        ("prompt", "", "1.5"),
    ]
    first = table[0]
    assert (first["condition"], first["replicate"], first["probe"]) == ("framed", "0", "p1")
    assert (first["trait"], first["layer"], first["steer_trait"], first["steer_scale"]) == (
        "malice",
        "3",
        "malice",
        "-1.5",
    )
    lines = [
        json.loads(line)
        for line in "".join(export_projections_text(rows, "jsonl")).split("\n")
        if line
    ]
    assert lines[2]["sample"] is None and lines[2]["kind"] == "prompt"
    assert lines[0]["projection"] == 0.25 and lines[0]["steer_scale"] == -1.5


def test_projections_survive_the_analysis_cache() -> None:
    from persona_tui.analysis.cache import _decode, _encode
    from persona_tui.scoring.judgements import JudgeFile

    session = projection_session(
        {("learns", 2, "p1"): [0.25]}, {("baseline", 0, "p1"): (1.5, 0.0)}, steering={"learns": 1.0}
    )
    blob = json.loads(
        json.dumps(_encode(["key"], session, JudgeFile.of(session.header.id, {}, ())))
    )
    decoded, _ = _decode(blob, session.path)
    assert decoded.header.traits == session.header.traits
    assert decoded.header.steering == session.header.steering
    assert [t.projections for t in decoded.trials] == [{"malice": 0.25}]
    assert dataset_of([decoded]).projections == dataset_of([session]).projections
