"""Plots of label rates by condition: a publication figure (matplotlib) and a terminal chart.

`save_rate_plot` writes PNG, SVG or PDF: grouped bars per label with 95% Wilson error bars,
grey fills and hatches so it reads in grayscale. `terminal_chart` draws one label's rate
per condition with plotext for a terminal (the TUI Results screen shows it); `chart_bars`
gives the same numbers as plain data for any other renderer.

Likelihood probes have their own pair: `save_options_plot` (per-probe log-odds as dots, a
probe's dots joined across conditions, condition means with 95% bootstrap intervals) and
`terminal_options_chart`; `options_points` gives their numbers as plain data.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_tui._util.deps import require
from persona_tui.analysis.options import OptionsAnalysis
from persona_tui.analysis.summary import Analysis
from persona_tui.errors import PersonaError

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
_GREYS = ("0.5", "0.8", "0.97", "0.65", "0.9", "0.35")
_HATCHES = ("", "///", "...", "xx", "\\\\", "++")
# plotext draws on one global figure: one chart at a time.
_PLOTEXT_LOCK = threading.Lock()


@dataclass(frozen=True)
class ChartBar:
    """One bar: a label's rate under a condition, with its 95% Wilson interval."""

    condition: str
    label: str
    k: int
    n: int
    rate: float | None
    low: float | None
    high: float | None


def chart_bars(analysis: Analysis, label: str | None = None) -> list[ChartBar]:
    """The bars of `label` (default: the contrast label) per condition, in condition order."""
    chosen = label or analysis.contrast_label
    if chosen is None:
        return []
    bars = []
    for condition in analysis.conditions:
        rate = analysis.rate(condition.id, chosen)
        if rate is None:
            continue
        interval = rate.interval
        bars.append(
            ChartBar(
                condition.id,
                chosen,
                rate.k,
                rate.n,
                rate.rate,
                interval.low if interval else None,
                interval.high if interval else None,
            )
        )
    return bars


def terminal_chart(
    analysis: Analysis,
    width: int = 80,
    height: int = 20,
    label: str | None = None,
    color: bool = False,
) -> str:
    """A bar chart of one label's rate per condition with 95% intervals, as terminal text.

    Without `color` the text holds no escape sequences (safe for any widget); with it,
    ANSI colour codes (render with `rich.text.Text.from_ansi`).
    """
    plt = require("plotext", "the terminal chart")
    bars = chart_bars(analysis, label)
    if not bars:
        return "no labelled trials to chart"
    with _PLOTEXT_LOCK:
        plt.clear_figure()
        plt.limit_size(False, False)  # the caller's size, not the process's terminal
        plt.plotsize(width, height)
        plt.theme("pro" if color else "clear")
        names = [bar.condition for bar in bars]
        plt.bar(names, [100 * (bar.rate or 0.0) for bar in bars], width=0.3, marker="▒")
        for position, bar in enumerate(bars, start=1):
            if bar.low is not None and bar.high is not None:
                plt.plot([position, position], [100 * bar.low, 100 * bar.high], marker="┃")
        plt.xlim(0.5, len(bars) + 0.5)  # whole bars at both edges
        plt.ylim(0, 100)
        plt.yticks([0, 25, 50, 75, 100], ["0%", "25%", "50%", "75%", "100%"])
        plt.title(f"rate of '{bars[0].label}' by condition (┃ 95% Wilson interval)")
        text: str = plt.build()
        plt.clear_figure()
    return text if color else str(plt.uncolorize(text))


def check_plot_path(path: Path) -> None:
    """PersonaError unless `path` names a format the plots are written in."""
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise PersonaError(
            f"{path}: cannot tell the plot format; use a file name ending in "
            f"{', '.join(PLOT_SUFFIXES)}"
        )


def write_figure(figure: Any, path: Path, dpi: int) -> Path:
    """Lay out and write a matplotlib figure (an SVG without a date, so it is reproducible);
    PersonaError naming the file when it cannot be written."""
    figure.tight_layout()
    metadata = {"Date": None} if path.suffix.lower() == ".svg" else None
    try:
        figure.savefig(path, dpi=dpi, metadata=metadata)
    except OSError as error:
        raise PersonaError(f"{path}: cannot write the plot: {error.strerror or error}") from None
    return path


def save_rate_plot(
    analysis: Analysis, path: Path, labels: Sequence[str] | None = None, dpi: int = 200
) -> Path:
    """Draw label rates by condition with 95% Wilson error bars to PNG, SVG or PDF."""
    check_plot_path(path)
    require("matplotlib", "plots")
    from matplotlib.figure import Figure

    chosen = list(labels) if labels else list(analysis.labels)
    conditions = [c.id for c in analysis.conditions]
    if not chosen or not conditions:
        raise PersonaError("nothing to plot: the sessions have no labelled trials")
    group = 0.8
    width = group / len(chosen)
    figure = Figure(figsize=(max(4.0, 1.1 * len(conditions) * max(1, len(chosen)) ** 0.5), 3.6))
    axes = figure.add_subplot()
    for index, label in enumerate(chosen):
        xs, ys, below, above = [], [], [], []
        for position, condition in enumerate(conditions):
            rate = analysis.rate(condition, label)
            if rate is None or rate.rate is None:
                continue
            xs.append(position - group / 2 + width * (index + 0.5))
            ys.append(rate.rate * 100)
            low = rate.interval.low if rate.interval else rate.rate
            high = rate.interval.high if rate.interval else rate.rate
            below.append((rate.rate - low) * 100)
            above.append((high - rate.rate) * 100)
        axes.bar(
            xs,
            ys,
            width=width,
            color=_GREYS[index % len(_GREYS)],
            hatch=_HATCHES[index % len(_HATCHES)],
            edgecolor="black",
            linewidth=0.8,
            label=label,
            yerr=[below, above],
            capsize=3,
            error_kw={"elinewidth": 0.9, "ecolor": "black"},
        )
    axes.set_xticks(range(len(conditions)), conditions, rotation=20 if len(conditions) > 4 else 0)
    axes.set_ylim(0, 100)
    axes.set_ylabel("trials with label (%)")
    axes.set_xlabel("condition")
    axes.spines[["top", "right"]].set_visible(False)
    if len(chosen) > 1:
        axes.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.set_title("Label rates by condition (95% Wilson intervals)", fontsize="medium")
    return write_figure(figure, path, dpi)


# ------------------------------------------------------------------ likelihood probes


@dataclass(frozen=True)
class OptionPoints:
    """One condition's per-probe log-odds and its mean with the 95% bootstrap interval."""

    condition: str
    probes: tuple[str, ...]
    values: tuple[float, ...]
    mean: float | None
    low: float | None
    high: float | None


def options_points(options: OptionsAnalysis) -> list[OptionPoints]:
    """The options plot's numbers, in condition order."""
    out = []
    for condition in options.conditions:
        pairs = [(x.probe, x.log_odds) for x in options.per_probe if x.condition == condition.id]
        mean = options.mean(condition.id)
        interval = mean.interval if mean is not None else None
        out.append(
            OptionPoints(
                condition.id,
                tuple(p for p, _ in pairs),
                tuple(v for _, v in pairs),
                mean.mean if mean is not None else None,
                interval.low if interval else None,
                interval.high if interval else None,
            )
        )
    return out


def _jitter(index: int, count: int, spread: float = 0.24) -> float:
    """A fixed offset per probe, so the dots of one condition do not sit on each other."""
    return 0.0 if count < 2 else spread * (index / (count - 1) - 0.5)


def terminal_options_chart(
    options: OptionsAnalysis, width: int = 80, height: int = 20, color: bool = False
) -> str:
    """Per-probe log-odds (·) and condition means (◆, ┃ 95% interval) as terminal text."""
    plt = require("plotext", "the terminal chart")
    points = options_points(options)
    if not points:
        return "no scored options to chart"
    probes = list(options.probes)
    with _PLOTEXT_LOCK:
        plt.clear_figure()
        plt.limit_size(False, False)
        plt.plotsize(width, height)
        plt.theme("pro" if color else "clear")
        for position, point in enumerate(points, start=1):
            xs = [position + _jitter(probes.index(p), len(probes)) for p in point.probes]
            if xs:
                plt.scatter(xs, list(point.values), marker="·")
            if point.low is not None and point.high is not None:
                plt.plot([position, position], [point.low, point.high], marker="┃")
            if point.mean is not None:
                plt.scatter([position], [point.mean], marker="◆")
        plt.hline(0.0)
        plt.xlim(0.5, len(points) + 0.5)
        plt.xticks(list(range(1, len(points) + 1)), [p.condition for p in points])
        plt.title(f"{options.title}: · probe, ◆ mean, ┃ 95%")
        text: str = plt.build()
        plt.clear_figure()
    return text if color else str(plt.uncolorize(text))


def save_options_plot(options: OptionsAnalysis, path: Path, dpi: int = 200) -> Path:
    """Draw per-probe log-odds and condition means with 95% intervals to PNG, SVG or PDF."""
    check_plot_path(path)
    require("matplotlib", "plots")
    from matplotlib.figure import Figure

    points = options_points(options)
    if not points:
        raise PersonaError("nothing to plot: the sessions have no scored options")
    probes = list(options.probes)
    figure = Figure(figsize=(max(4.0, 1.3 * len(points) + 1.5), 3.8))
    axes = figure.add_subplot()
    axes.axhline(0.0, color="0.6", linewidth=0.8, linestyle="--", zorder=0)
    # A probe's dots joined across conditions: the contrasts are paired by probe.
    for probe in probes:
        xs, ys = [], []
        for position, point in enumerate(points):
            if probe in point.probes:
                xs.append(position + _jitter(probes.index(probe), len(probes)))
                ys.append(point.values[point.probes.index(probe)])
        axes.plot(xs, ys, color="0.85", linewidth=0.6, zorder=1)
    for position, point in enumerate(points):
        xs = [position + _jitter(probes.index(p), len(probes)) for p in point.probes]
        axes.scatter(xs, point.values, s=12, color="0.45", zorder=2, linewidths=0)
        if point.mean is not None:
            low = point.low if point.low is not None else point.mean
            high = point.high if point.high is not None else point.mean
            axes.errorbar(
                [position + 0.3],
                [point.mean],
                yerr=[[point.mean - low], [high - point.mean]],
                fmt="D",
                color="black",
                markersize=5,
                capsize=3,
                elinewidth=1.0,
                zorder=3,
            )
    conditions = [p.condition for p in points]
    axes.set_xticks(range(len(conditions)), conditions, rotation=20 if len(conditions) > 4 else 0)
    axes.set_xlim(-0.5, len(conditions) - 0.3)
    axes.set_ylabel(f"log-odds '{options.label_a}' vs '{options.label_b}' (nats)")
    axes.set_xlabel("condition")
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_title(
        "Per probe (dots); mean with 95% bootstrap interval",
        fontsize="medium",
    )
    return write_figure(figure, path, dpi)
