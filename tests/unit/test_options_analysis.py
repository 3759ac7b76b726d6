"""Likelihood-probe statistics, checked against hand computations and scipy/numpy."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Sequence

import pytest

from persona_tui.analysis.options import analyze_options, log_mean_exp, nats
from persona_tui.analysis.records import dataset_of
from persona_tui.analysis.stats import bootstrap_mean_interval, sign_flip_p
from persona_tui.errors import PersonaError
from persona_tui.values import ModelInfo
from tests.analysis_sessions import MODEL, OptionSpec, options_session

np = pytest.importorskip("numpy")
scipy_stats = pytest.importorskip("scipy.stats")
scipy_special = pytest.importorskip("scipy.special")


def lme_by_hand(values: Sequence[float]) -> float:
    return math.log(sum(math.exp(v) for v in values) / len(values))


def cells_from(
    log_odds: dict[str, Sequence[float]], cruel_tokens: int = 8, ok_tokens: int = 8
) -> dict[tuple[str, str], list[OptionSpec]]:
    """Cells where probe i of a condition has log-odds(cruel vs ok) = log_odds[condition][i].

    Each label has two options a quarter nat apart around a per-probe level, so the LMEs
    are not trivial; the log-odds come out exactly as asked.
    """
    cells: dict[tuple[str, str], list[OptionSpec]] = {}
    spread = lme_by_hand([-0.25, 0.25])
    for condition, values in log_odds.items():
        for index, value in enumerate(values):
            level = -10.0 - index % 3
            cells[(condition, f"q{index + 1}")] = [
                ("kind-1", "ok", level - 0.25 - spread, ok_tokens),
                ("kind-2", "ok", level + 0.25 - spread, ok_tokens),
                ("cruel-1", "cruel", level + value - 0.25 - spread, cruel_tokens),
                ("cruel-2", "cruel", level + value + 0.25 - spread, cruel_tokens),
            ]
    return cells


def test_log_mean_exp_matches_scipy() -> None:
    values = [-23.41, -7.2, -15.0, -0.5]
    expected = float(scipy_special.logsumexp(values)) - math.log(len(values))
    assert log_mean_exp(values) == pytest.approx(expected, abs=1e-12)
    assert log_mean_exp([-800.0, -801.0]) == pytest.approx(-800.0 + lme_by_hand([0.0, -1.0]))
    assert log_mean_exp([-math.inf, -2.0]) == pytest.approx(-2.0 - math.log(2))
    assert log_mean_exp([-math.inf]) == -math.inf


def test_hand_computed_log_odds_means_and_contrast() -> None:
    cells: dict[tuple[str, str], list[OptionSpec]] = {
        ("baseline", "p1"): [
            ("k1", "ok", -2.0, 4),
            ("k2", "ok", -4.0, 6),
            ("c1", "cruel", -9.0, 5),
        ],
        ("baseline", "p2"): [
            ("k1", "ok", -3.0, 4),
            ("c1", "cruel", -8.0, 5),
            ("c2", "cruel", -6.0, 7),
        ],
        ("framed", "p1"): [("k1", "ok", -2.5, 4), ("k2", "ok", -3.5, 6), ("c1", "cruel", -6.0, 5)],
        ("framed", "p2"): [
            ("k1", "ok", -3.0, 4),
            ("c1", "cruel", -5.0, 5),
            ("c2", "cruel", -5.5, 7),
        ],
    }
    result = analyze_options(dataset_of([options_session(cells)]))
    # The scenario marks "cruel" bad: A = cruel, B = ok by default.
    assert (result.label_a, result.label_b, result.labels_given) == ("cruel", "ok", False)
    expected = {
        ("baseline", "p1"): -9.0 - lme_by_hand([-2.0, -4.0]),
        ("baseline", "p2"): lme_by_hand([-8.0, -6.0]) + 3.0,
        ("framed", "p1"): -6.0 - lme_by_hand([-2.5, -3.5]),
        ("framed", "p2"): lme_by_hand([-5.0, -5.5]) + 3.0,
    }
    for (condition, probe), value in expected.items():
        assert result.log_odds(condition, probe) == pytest.approx(value, abs=1e-12)
    base = result.mean("baseline")
    assert base is not None and base.probes == 2
    assert base.mean == pytest.approx((expected["baseline", "p1"] + expected["baseline", "p2"]) / 2)
    assert base.label == "Baseline"
    (contrast,) = result.contrasts
    assert (contrast.condition, contrast.reference, contrast.probes) == ("framed", "baseline", 2)
    d1 = expected["framed", "p1"] - expected["baseline", "p1"]
    d2 = expected["framed", "p2"] - expected["baseline", "p2"]
    assert contrast.difference == pytest.approx((d1 + d2) / 2)
    # Two probes: the probe bootstrap can only draw (d1,d1), (d1,d2), (d2,d2) means.
    assert contrast.probe_interval is not None
    assert contrast.probe_interval.low == pytest.approx(min(d1, d2))
    assert contrast.probe_interval.high == pytest.approx(max(d1, d2))
    # Resampling the options too (they differ within a label) widens it.
    assert contrast.interval is not None and contrast.options_interval == contrast.interval
    assert contrast.interval.low < min(d1, d2) and contrast.interval.high > max(d1, d2)
    assert contrast.p_value == pytest.approx(0.5) and contrast.exact  # 2 of 4 sign patterns
    assert contrast.verdict == "too few" and contrast.sentence.startswith("too few probes")
    # Tokens per label over distinct (probe, option): cruel 5, 5, 7; ok 4, 6, 4.
    tokens = {t.label: (t.options, t.mean_tokens) for t in result.tokens}
    assert tokens == {"cruel": (3, pytest.approx(17 / 3)), "ok": (3, pytest.approx(14 / 3))}
    # --labels ok,cruel turns every log-odds around.
    flipped = analyze_options(dataset_of([options_session(cells)]), labels=("ok", "cruel"))
    assert flipped.labels_given and flipped.log_odds("framed", "p1") == pytest.approx(
        -expected["framed", "p1"]
    )
    assert flipped.contrasts[0].difference == pytest.approx(-(d1 + d2) / 2)


def test_sign_flip_p_exact_by_hand_and_against_scipy() -> None:
    # [1, 2, 3]: only all-plus and all-minus reach |mean| >= 2: p = 2/8.
    assert sign_flip_p([1.0, 2.0, 3.0]) == (pytest.approx(0.25), True)
    # Brute force over every pattern for a mixed case.
    data = [0.7, -0.2, 1.3, 0.4, -0.9, 0.05]
    observed = abs(sum(data)) / len(data)
    hits = sum(
        abs(sum(s * d for s, d in zip(signs, data, strict=True))) / len(data) >= observed - 1e-12
        for signs in itertools.product((-1, 1), repeat=len(data))
    )
    assert sign_flip_p(data) == (pytest.approx(hits / 64), True)
    rng = random.Random(3)
    for n in (10, 16):
        diffs = [rng.gauss(0.4, 1.0) for _ in range(n)]
        p, exact = sign_flip_p(diffs) or (math.nan, False)
        reference = scipy_stats.permutation_test(
            (np.asarray(diffs),),
            lambda x, axis: np.mean(x, axis=axis),
            permutation_type="samples",
            n_resamples=2**n,
            alternative="two-sided",
        )
        assert exact and p == pytest.approx(float(reference.pvalue), rel=1e-9)


def test_sign_flip_p_randomised_beyond_the_exact_limit() -> None:
    rng = random.Random(5)
    diffs = [rng.gauss(0.3, 1.0) for _ in range(24)]  # 2^24 patterns: random flips
    p, exact = sign_flip_p(diffs) or (math.nan, True)
    assert not exact
    assert sign_flip_p(diffs) == (p, False)  # seeded: the same p every time
    reference = scipy_stats.permutation_test(
        (np.asarray(diffs),),
        lambda x, axis: np.mean(x, axis=axis),
        permutation_type="samples",
        n_resamples=100_000,
        alternative="two-sided",
        random_state=np.random.default_rng(1),
    )
    assert p == pytest.approx(float(reference.pvalue), abs=0.006)


def test_bootstrap_interval_matches_scipy_percentile_bootstrap() -> None:
    rng = random.Random(11)
    values = [rng.gauss(1.0, 2.0) for _ in range(20)]
    interval = bootstrap_mean_interval(values)
    assert interval is not None
    reference = scipy_stats.bootstrap(
        (np.asarray(values),),
        np.mean,
        n_resamples=10_000,
        method="percentile",
        random_state=np.random.default_rng(2),
    ).confidence_interval
    assert interval.low == pytest.approx(float(reference.low), abs=0.06)
    assert interval.high == pytest.approx(float(reference.high), abs=0.06)
    assert bootstrap_mean_interval(values) == interval  # seeded
    assert bootstrap_mean_interval([1.0]) is None


def test_a_known_shift_is_detected() -> None:
    rng = random.Random(7)
    baseline = [rng.gauss(-5.0, 1.5) for _ in range(24)]
    framed = [b + 1.0 + rng.gauss(0.0, 0.5) for b in baseline]
    result = analyze_options(
        dataset_of([options_session(cells_from({"baseline": baseline, "framed": framed}))])
    )
    (contrast,) = result.contrasts
    true_mean = sum(f - b for f, b in zip(framed, baseline, strict=True)) / 24
    assert contrast.difference == pytest.approx(true_mean)
    assert contrast.verdict == "higher"
    assert contrast.interval is not None and contrast.interval.low > 0
    assert contrast.p_value is not None and contrast.p_value < 0.001 and not contrast.exact
    assert contrast.sentence == (
        f"higher under framed than baseline: {nats(true_mean, signed=True)} nats "
        f"[{nats(contrast.interval.low)}, {nats(contrast.interval.high)}] (24 probes × 4 options)"
    )
    assert contrast.higher == sum(f > b for f, b in zip(framed, baseline, strict=True))
    # The reversed labels: the same shift, now lower.
    flipped = analyze_options(
        dataset_of([options_session(cells_from({"baseline": baseline, "framed": framed}))]),
        labels=("ok", "cruel"),
    )
    assert flipped.contrasts[0].verdict == "lower"
    assert flipped.contrasts[0].sentence.startswith("lower under framed than baseline: −")


def test_a_null_says_no_difference_shown_with_the_power() -> None:
    rng = random.Random(8)
    baseline = [rng.gauss(-5.0, 1.5) for _ in range(12)]
    framed = [b + rng.gauss(0.0, 1.0) for b in baseline]
    result = analyze_options(
        dataset_of([options_session(cells_from({"baseline": baseline, "framed": framed}))])
    )
    (contrast,) = result.contrasts
    assert contrast.verdict == "no difference shown"
    assert contrast.interval is not None and contrast.interval.low < 0 < contrast.interval.high
    assert contrast.p_value is not None and contrast.p_value >= 0.05 and contrast.exact
    assert contrast.sentence.startswith("no difference shown: ")
    assert contrast.sentence.endswith(
        " nats "
        + f"[{nats(contrast.interval.low)}, {nats(contrast.interval.high)}] (12 probes × 4 options)"
    )
    half = (contrast.interval.high - contrast.interval.low) / 2
    assert result.resolvable == pytest.approx(half)
    assert f"resolves differences of about ±{nats(half)} nats" in result.power_line
    assert "with 12 probes" in result.power_line


def test_every_pair_of_conditions_is_contrasted_in_scenario_order() -> None:
    values = {
        c: [float(i) * k for i in range(8)] for k, c in enumerate(("baseline", "framed", "extra"))
    }
    result = analyze_options(dataset_of([options_session(cells_from(values))]))
    pairs = [(c.condition, c.reference) for c in result.contrasts]
    assert pairs == [("framed", "baseline"), ("extra", "baseline"), ("extra", "framed")]


def test_repeated_sessions_pool_by_probe() -> None:
    rng = random.Random(9)
    baseline = [rng.gauss(-5.0, 1.0) for _ in range(10)]
    framed = [b + 0.8 for b in baseline]
    cells = cells_from({"baseline": baseline, "framed": framed})
    one = analyze_options(dataset_of([options_session(cells)]))
    two = analyze_options(
        dataset_of([options_session(cells), options_session(cells, session_id="s-2")])
    )
    assert two.per_probe == one.per_probe and two.contrasts == one.contrasts
    assert two.sessions == ("2026-01-01T0000-framing-study-0001", "s-2")
    assert not two.notes
    # A second run whose values differ: each option's log-probability is averaged.
    shifted = {
        k: [(i, lab, lp + 0.2 if lab == "cruel" else lp, n) for i, lab, lp, n in v]
        for k, v in cells.items()
    }
    other = ModelInfo(**{**MODEL.__dict__, "sha256": "cd" * 32, "name": "other-model"})
    mixed = analyze_options(
        dataset_of(
            [options_session(cells), options_session(shifted, session_id="s-3", model=other)]
        )
    )
    assert mixed.log_odds("baseline", "q1") == pytest.approx(baseline[0] + 0.1)
    assert any("averaged" in note for note in mixed.notes)
    assert any("different models" in note for note in mixed.notes)


def test_labels_and_missing_options_are_explained() -> None:
    cells = cells_from({"baseline": [1.0] * 6, "framed": [2.0] * 6})
    dataset = dataset_of([options_session(cells)])
    with pytest.raises(
        PersonaError, match="no option has the label 'kind'; options use: ok, cruel"
    ):
        analyze_options(dataset, labels=("kind", "ok"))
    with pytest.raises(PersonaError, match="itself"):
        analyze_options(dataset, labels=("ok", "ok"))
    with pytest.raises(PersonaError, match="no scored answer options"):
        analyze_options(dataset_of([options_session({})]))
    only_ok = {k: [o for o in v if o[1] == "ok"] for k, v in cells.items()}
    with pytest.raises(PersonaError, match="every option has the label 'ok'"):
        analyze_options(dataset_of([options_session(only_ok)]))
    # A cell without cruel options is left out, and said so.
    partial = dict(cells)
    partial[("framed", "q1")] = [o for o in cells[("framed", "q1")] if o[1] == "ok"]
    result = analyze_options(dataset_of([options_session(partial)]))
    assert result.contrasts[0].probes == 5
    assert any("1 condition × probe cell(s) left out" in n for n in result.notes)


def test_length_difference_between_labels_is_noted() -> None:
    cells = cells_from({"baseline": [0.0] * 6, "framed": [0.5] * 6}, cruel_tokens=16, ok_tokens=6)
    result = analyze_options(dataset_of([options_session(cells)]))
    assert any(
        "'cruel' options are longer than 'ok' ones (16.0 vs 6.0 tokens" in n for n in result.notes
    )


def test_nats_formatting() -> None:
    assert nats(1.44, signed=True) == "+1.4"
    assert nats(-1.56) == "−1.6"
    assert nats(-0.04, signed=True) == "+0.0"
    assert nats(2.4) == "2.4"


def test_option_cells_survive_the_analysis_cache() -> None:
    from persona_tui.analysis.cache import _decode, _encode
    from persona_tui.scoring.judgements import JudgeFile

    session = options_session(cells_from({"baseline": [1.0, -2.0], "framed": [0.5, 3.0]}))
    blob = json.loads(
        json.dumps(_encode(["key"], session, JudgeFile.of(session.header.id, {}, ())))
    )
    decoded, _ = _decode(blob, session.path)
    assert decoded.option_cells == session.option_cells
    rows = dataset_of([decoded]).options
    assert rows == dataset_of([session]).options
    assert rows[0].prompt == "<prompt baseline q1>\nAssistant:"


def test_an_adapter_condition_is_named_one_training_run_beside_its_verdicts() -> None:
    import dataclasses

    from persona_tui.analysis.cache import _decode, _encode
    from persona_tui.scoring.judgements import JudgeFile
    from persona_tui.session.model import AdapterRecord

    values = {
        c: [float(i) * k - 3.0 for i in range(8)]
        for k, c in enumerate(("baseline", "framed", "extra"))
    }
    plain = options_session(cells_from(values))
    adapter = AdapterRecord("framed", "/adapters/framed/adapter.gguf", "ab" * 32, 1024)
    trained = dataclasses.replace(
        plain, header=dataclasses.replace(plain.header, adapters=(adapter,))
    )
    blob = json.loads(
        json.dumps(_encode(["key"], trained, JudgeFile.of(trained.header.id, {}, ())))
    )
    cached, _ = _decode(blob, trained.path)
    assert cached.header.adapters == trained.header.adapters
    for session in (trained, cached):
        result = analyze_options(dataset_of([session]))
        notes = {(c.condition, c.reference): c.explanation for c in result.contrasts}
        one_run = "is one training run (one LoRA adapter): the interval covers the probes"
        assert one_run in notes[("framed", "baseline")]
        assert one_run in notes[("extra", "framed")]
        assert "training run" not in notes[("extra", "baseline")]
        runs = {(c.condition, c.reference): c.single_runs for c in result.contrasts}
        assert runs == {
            ("framed", "baseline"): ("framed",),
            ("extra", "baseline"): (),
            ("extra", "framed"): ("framed",),
        }
    untouched = analyze_options(dataset_of([plain]))
    assert all("training run" not in c.explanation for c in untouched.contrasts)
    # The Results screen says it under the contrasts it concerns.
    from persona_tui.ui.screens.results import options_text

    shown = options_text(analyze_options(dataset_of([trained]))).plain
    assert shown.count("framed is one training run (one LoRA adapter)") == 2
    assert "training run" not in options_text(untouched).plain
