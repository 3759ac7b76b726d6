"""Likelihood probes in `export --table options`, `report` (text, --labels, plots, charts)."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from persona_tui.analysis.export import OPTION_COLUMNS, export_options_text
from persona_tui.analysis.options import analyze_options
from persona_tui.analysis.plots import options_points, terminal_options_chart
from persona_tui.analysis.records import dataset_of
from persona_tui.analysis.report import render
from persona_tui.cli.analysis import add_analysis_commands
from persona_tui.errors import PersonaError
from persona_tui.session.model import Session
from tests.analysis_sessions import (
    SessionSpec,
    attach_options,
    labelled_study,
    options_session,
    write_session,
)
from tests.unit.test_options_analysis import cells_from

pd = pytest.importorskip("pandas")
pytest.importorskip("scipy")


def shifted_cells(shift: float, probes: int = 12) -> Any:
    rng = random.Random(4)
    baseline = [rng.gauss(-5.0, 1.5) for _ in range(probes)]
    framed = [b + shift + rng.gauss(0.0, 0.4) for b in baseline]
    return cells_from({"baseline": baseline, "framed": framed})


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_analysis_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def with_options() -> Callable[[Path, Any], None]:
    """Write option cells into a session file through the store, as a scoring pass does."""

    def add(path: Path, cells: Any) -> None:
        attach_options({path: cells})

    return add


def test_options_table_round_trips_through_pandas() -> None:
    session = options_session(shifted_cells(1.0, probes=3))
    rows = dataset_of([session]).options
    assert len(rows) == 2 * 3 * 4
    text = "".join(export_options_text(rows, "csv"))
    frame = pd.read_csv(io.StringIO(text), keep_default_na=False)
    assert list(frame.columns) == [c.name for c in OPTION_COLUMNS]
    for required in ("condition", "probe", "option", "label", "logprob", "n_tokens", "prompt"):
        assert required in frame.columns
    first = rows[0]
    assert frame.loc[0, "session"] == session.header.id
    assert frame.loc[0, "scenario"] == "framing-study"
    assert frame.loc[0, "model_sha256"] == "ab" * 32
    assert frame.loc[0, "logprob"] == pytest.approx(first.logprob, abs=1e-12)
    assert frame.loc[0, "mean_logprob"] == pytest.approx(first.logprob / first.n_tokens)
    assert frame.loc[0, "prompt"] == "<prompt baseline q1>\nAssistant:"
    assert frame.loc[0, "text"] == " answer kind-1"
    lines = "".join(export_options_text(rows, "jsonl")).splitlines()
    record = json.loads(lines[-1])
    last = rows[-1]
    assert record["option"] == last.option and record["label"] == last.label
    assert record["logprob"] == last.logprob and record["n_tokens"] == last.n_tokens


def test_cli_export_options_and_trials_tables(
    tmp_path: Path, with_options: Callable[[Path, Any], None], capsys: pytest.CaptureFixture[str]
) -> None:
    trials = labelled_study({"baseline": [0, 1, 0, 0, 0], "framed": [2, 3, 1, 2, 2]})
    path = write_session(tmp_path / "s.toml", SessionSpec(trials=trials))
    with pytest.raises(PersonaError, match="no scored answer options"):
        _run(["export", str(path), "--table", "options", "--no-cache"])
    with_options(path, shifted_cells(1.0, probes=3))
    out = tmp_path / "options.jsonl"
    assert _run(["export", str(path), "--table", "options", "-o", str(out), "--no-cache"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 24
    assert "24 rows" in capsys.readouterr().err
    assert _run(["export", str(path), "--no-cache"]) == 0  # the default: the trials table
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("session_id,session_file,")


def test_report_text_has_the_options_sections() -> None:
    dataset = dataset_of([options_session(shifted_cells(1.5))])
    options = analyze_options(dataset)
    text = render(None, "text", options)
    assert "Likelihood probes: log-odds of 'cruel' vs 'ok' by condition" in text
    assert "framed vs baseline: higher under framed than baseline: +1." in text
    assert (
        "1 of 1 contrasts show a difference; with 12 probes × 4 options this study resolves" in text
    )
    assert "interval half-width by level" in text and "run SD" not in text
    assert "Likelihood probes: option length by label" in text
    assert "trials    none sampled" in text
    markdown = render(None, "markdown", options)
    assert "## Likelihood probes: framing contrasts" in markdown
    assert "<h2>Likelihood probes" in render(None, "html", options)
    null = analyze_options(dataset_of([options_session(shifted_cells(0.0))]))
    null_text = render(None, "text", null)
    assert "no difference shown: " in null_text
    assert "no framing changed the log-odds of 'cruel' vs 'ok' detectably: with 12 probes ×" in (
        null_text
    )


def test_cli_report_with_options_labels_plot_and_chart(
    tmp_path: Path, with_options: Callable[[Path, Any], None], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("plotext")
    trials = labelled_study({"baseline": [0, 1, 0, 0, 0], "framed": [2, 3, 1, 2, 2]})
    path = write_session(tmp_path / "s.toml", SessionSpec(trials=trials))
    with pytest.raises(PersonaError, match="--labels is for scored answer options"):
        _run(["report", str(path), "--labels", "ok,cruel", "--no-cache"])
    with_options(path, shifted_cells(1.5))
    plot = tmp_path / "options.png"
    argv = ["report", str(path), "--no-cache", "--chart", "--options-plot", str(plot)]
    assert _run(argv) == 0
    out = capsys.readouterr()
    assert "Label rates by condition" in out.out  # the trials report is still there
    assert "higher under framed than baseline" in out.out
    assert "vs 'ok': · probe, ◆ mean, ┃ 95%" in out.out  # the terminal options chart
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "options plot →" in out.err
    assert _run(["report", str(path), "--no-cache", "--labels", "ok,cruel"]) == 0
    assert "lower under framed than baseline: −1." in capsys.readouterr().out
    with pytest.raises(PersonaError, match="give two labels"):
        _run(["report", str(path), "--no-cache", "--labels", "ok"])


def test_report_of_options_without_trials(
    tmp_path: Path, with_options: Callable[[Path, Any], None], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_session(tmp_path / "s.toml", SessionSpec(trials=[]))
    with_options(path, shifted_cells(0.0))
    assert _run(["report", str(path), "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert "none sampled" in text and "no difference shown" in text
    assert "Label rates" not in text


def test_terminal_options_chart_and_points() -> None:
    pytest.importorskip("plotext")
    options = analyze_options(dataset_of([options_session(shifted_cells(1.5, probes=6))]))
    points = options_points(options)
    assert [p.condition for p in points] == ["baseline", "framed"]
    assert len(points[0].values) == 6
    assert points[1].mean == pytest.approx(options.means[1].mean)
    chart = terminal_options_chart(options, width=60, height=15)
    assert "\x1b[" not in chart and "baseline" in chart and "framed" in chart


def test_sessions_without_options_report_exactly_as_before(tmp_path: Path) -> None:
    trials = labelled_study({"baseline": [0, 1, 0, 0, 0], "framed": [2, 3, 1, 2, 2]})
    session = write_session(tmp_path / "s.toml", SessionSpec(trials=trials))
    from persona_tui.analysis.records import load_dataset
    from persona_tui.analysis.summary import analyze

    dataset = load_dataset([session], use_cache=False)
    assert dataset.options == ()
    analysis = analyze(dataset)
    assert render(analysis, "text") == render(analysis, "text", None)
    assert "Likelihood" not in render(analysis, "text")


def test_option_rows_carry_the_session(tmp_path: Path) -> None:
    session: Session = options_session(shifted_cells(0.0, probes=2), path=tmp_path / "x.toml")
    row = dataset_of([session]).options[0]
    assert dataclasses.asdict(row)["session_file"] == str(tmp_path / "x.toml")


def test_report_of_a_replicated_study_names_runs_spread_and_levels() -> None:
    from tests.unit.test_replicate_stats import study

    options = study({"framed": [0.2, 1.0, 1.8]})
    text = render(None, "text", options)
    assert "mean over training runs and probes" in text
    assert "probes  mean log-odds  95% interval    run SD  run range" in text
    assert "+ training runs  run diff SD  run diff range" in text
    assert "0.80" in text  # the runs' SD
    assert "0.250 (min 0.25)" in text  # the run-level sign flip cannot reach 0.05
    assert "(3 training runs of framed × 8 probes × 4 options)" in text
    assert "cannot reach p < 0.05 (8 sign patterns: the smallest p is 0.25)" in text
    export = "".join(export_options_text(dataset_of([_replicated()]).options, "csv"))
    header, first = export.splitlines()[:2]
    assert header.split(",")[4:6] == ["condition", "replicate"]
    assert first.split(",")[4:6] == ["baseline", "0"]
    assert "framed,2," in export


def _replicated() -> Session:
    from tests.analysis_sessions import replicated_options_session
    from tests.unit.test_replicate_stats import arm_cells

    values = {("baseline", 0): [0.0, 1.0], ("framed", 1): [1.0, 2.0], ("framed", 2): [0.5, 1.0]}
    return replicated_options_session(arm_cells(values), ["framed"])
