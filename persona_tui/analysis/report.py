"""Render an Analysis as a report: plain text, Markdown or a standalone HTML page.

The report is built once as titled tables (`Section`), then written in the chosen format,
so the three formats always say the same thing. Sessions with scored answer options get
the likelihood-probe sections too (`report_options.option_sections`, from an
`OptionsAnalysis`), sessions with trait projections the "Trait projections" sections
(`report_projections.projection_sections`, from a `ProjectionsAnalysis`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Literal

from persona_tui.analysis.options import OptionsAnalysis
from persona_tui.analysis.projections import ProjectionsAnalysis
from persona_tui.analysis.report_cells import (
    Section,
    interval_pct,
    number,
    p_text,
    pct,
    signed_pct,
)
from persona_tui.analysis.report_options import option_sections
from persona_tui.analysis.report_projections import projection_sections
from persona_tui.analysis.summary import Analysis

ReportFormat = Literal["text", "markdown", "html"]


def sections(analysis: Analysis) -> list[Section]:
    """The report's tables, in order."""
    a = analysis
    names = {c.id: c.label for c in a.conditions}
    out = [
        Section(
            "Overview",
            ("", ""),
            (
                ("sessions", ", ".join(a.sessions)),
                ("labels from", a.source_description),
                ("trials", f"{a.trials} ({a.labelled} labelled)"),
                ("reference condition", f"{a.reference} ({names.get(a.reference, '')})"),
                ("bad labels", ", ".join(a.bad_labels) or "none marked in the schema"),
            ),
        )
    ]
    rate_rows = []
    for c in a.conditions:
        cells = [c.id, c.label, str(next((r.n for r in a.rates if r.condition == c.id), 0))]
        for label in a.labels:
            rate = a.rate(c.id, label)
            cells.append("—" if rate is None else f"{pct(rate.rate)} {interval_pct(rate.interval)}")
        rate_rows.append(tuple(cells))
    out.append(
        Section(
            "Label rates by condition (95% Wilson intervals)",
            ("condition", "framing", "n", *a.labels),
            tuple(rate_rows),
        )
    )
    if a.scales:
        out.append(
            Section(
                "Scale means by condition (95% t intervals; trials treated as independent)",
                ("scale", "condition", "n", "mean", "95% interval"),
                tuple(
                    (
                        s.scale,
                        s.condition,
                        str(s.estimate.n),
                        number(s.estimate.mean),
                        "—"
                        if s.estimate.interval is None
                        else f"[{s.estimate.interval.low:.2f}, {s.estimate.interval.high:.2f}]",
                    )
                    for s in a.scales
                ),
            )
        )
    if a.contrast_label and a.probe_counts:
        rows = []
        for probe in a.probes:
            cells = [probe]
            for c in a.conditions:
                cell = next(
                    (x for x in a.probe_counts if x.probe == probe and x.condition == c.id), None
                )
                cells.append("—" if cell is None or not cell.n else f"{cell.k}/{cell.n}")
            rows.append(tuple(cells))
        out.append(
            Section(
                f"Per probe: trials labelled '{a.contrast_label}' / labelled trials",
                ("probe", *(c.id for c in a.conditions)),
                tuple(rows),
            )
        )
    if a.contrasts:
        out.append(
            Section(
                f"Framing contrasts: rate of '{a.contrast_label}' against '{a.reference}' "
                "(95% bootstrap interval resampling probes; two-sided Fisher exact test)",
                ("condition", "rate", "reference", "difference", "95% interval", "p", "verdict"),
                tuple(
                    (
                        x.condition,
                        f"{pct(x.k / x.n if x.n else None)} ({x.k}/{x.n})",
                        f"{pct(x.k_ref / x.n_ref if x.n_ref else None)} ({x.k_ref}/{x.n_ref})",
                        signed_pct(x.difference),
                        "—"
                        if x.bootstrap is None
                        else f"[{x.bootstrap.low * 100:+.1f}, {x.bootstrap.high * 100:+.1f}]",
                        p_text(x.p_value),
                        x.verdict,
                    )
                    for x in a.contrasts
                ),
                tuple(f"{x.condition}: {x.explanation}" for x in a.contrasts),
            )
        )
    if a.agreements:
        out.append(
            Section(
                "Agreement",
                ("between", "measure", "raters", "items", "value", "raw agreement"),
                tuple(
                    (
                        g.what,
                        g.measure,
                        ", ".join(g.raters),
                        str(g.items),
                        number(g.value, 3) if g.value is not None else "undefined",
                        pct(g.observed),
                    )
                    for g in a.agreements
                ),
                tuple(f"{g.what}: {g.note}" for g in a.agreements if g.note),
            )
        )
    if a.notes:
        out.append(Section("Notes", notes=a.notes))
    return out


def render(
    analysis: Analysis | None,
    fmt: ReportFormat = "text",
    options: OptionsAnalysis | None = None,
    projections: ProjectionsAnalysis | None = None,
) -> str:
    """The report of `analysis` (trials), `options` (likelihood probes) and `projections`
    (trait projections); any may be None."""
    parts = sections(analysis) if analysis is not None else []
    if analysis is None and (options is not None or projections is not None):
        sessions = options.sessions if options is not None else ()
        if projections is not None:
            sessions = tuple(dict.fromkeys((*sessions, *projections.sessions)))
        parts.append(
            Section(
                "Overview",
                ("", ""),
                (("sessions", ", ".join(sessions)), ("trials", "none sampled or labelled")),
            )
        )
    extra = option_sections(options) if options is not None else []
    if projections is not None:
        extra += projection_sections(projections)
    if extra:
        notes = [i for i, section in enumerate(parts) if section.title == "Notes"]
        at = notes[0] if notes else len(parts)
        parts[at:at] = extra
    if fmt == "markdown":
        return _markdown(parts)
    if fmt == "html":
        return _html(parts)
    return _text(parts)


def _widths(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    return [max(len(str(x)) for x in col) for col in zip(columns, *rows, strict=False)]


def _text(parts: Sequence[Section]) -> str:
    lines: list[str] = ["persona-tui report", ""]
    for section in parts:
        lines += [section.title, "-" * min(len(section.title), 100)]
        if section.columns:
            widths = _widths(section.columns, section.rows)
            if any(section.columns):
                lines.append(
                    "  ".join(
                        c.ljust(w) for c, w in zip(section.columns, widths, strict=True)
                    ).rstrip()
                )
            for row in section.rows:
                lines.append(
                    "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                )
        lines += [f"  * {note}" for note in section.notes]
        lines.append("")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(parts: Sequence[Section]) -> str:
    lines: list[str] = ["# persona-tui report", ""]
    for section in parts:
        lines += [f"## {section.title}", ""]
        if section.columns:
            header = [c or " " for c in section.columns]
            lines.append("| " + " | ".join(_md_cell(c) for c in header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            for row in section.rows:
                lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
            lines.append("")
        lines += [f"- {_md_cell(note)}" for note in section.notes]
        if section.notes:
            lines.append("")
    return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:72em}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #999;padding:.25em .6em;text-align:left;vertical-align:top}"
    "th{background:#eee}"
)


def _html(parts: Sequence[Section]) -> str:
    e = html.escape
    body = ["<h1>persona-tui report</h1>"]
    for section in parts:
        body.append(f"<h2>{e(section.title)}</h2>")
        if section.columns:
            body.append("<table>")
            if any(section.columns):
                body.append("<tr>" + "".join(f"<th>{e(c)}</th>" for c in section.columns) + "</tr>")
            for row in section.rows:
                body.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
            body.append("</table>")
        if section.notes:
            body.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in section.notes) + "</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>persona-tui report</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
