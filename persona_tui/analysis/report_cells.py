"""The cells of a report's tables: a titled table (`Section`) and how its numbers are
written (percentages, intervals, p-values), shared by `report` and `report_options`."""

from __future__ import annotations

from dataclasses import dataclass

from persona_tui.analysis.stats import Interval


@dataclass(frozen=True)
class Section:
    title: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    notes: tuple[str, ...] = ()


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def interval_pct(interval: Interval | None) -> str:
    if interval is None:
        return "—"
    return f"[{interval.low * 100:.1f}, {interval.high * 100:.1f}]"


def signed_pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.1f} pp"


def number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def p_text(value: float | None) -> str:
    if value is None:
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"
