"""The trait-projection sections of a report, from a `ProjectionsAnalysis`.

Per trait and kind (responses: trials; prompts: option cells): the mean projection by
condition with its hierarchical interval (and the spread between training runs in a
replicated study), the framing contrasts with their verdicts, and the agreement with the
behavioural measures (correlations with n). The sections are `report.Section`s, written in
every format by `report.render`.
"""

from __future__ import annotations

from persona_tui.analysis.projections import ProjectionsAnalysis, TraitProjections
from persona_tui.analysis.report_cells import Section, number
from persona_tui.analysis.report_options import contrast_section, spread_cells


def projection_sections(projections: ProjectionsAnalysis) -> list[Section]:
    """The tables of every trait and kind, then the notes."""
    out: list[Section] = []
    for trait in projections.traits:
        out += trait_sections(trait)
    if projections.notes:
        out.append(Section("Trait projections: notes", notes=projections.notes))
    return out


def trait_sections(t: TraitProjections) -> list[Section]:
    """Means by condition, contrasts, agreement of one trait and kind."""
    runs = t.replicated
    steered = any(m.steer_scale is not None for m in t.means)
    averaged = "samples, " if t.kind == "response" else ""
    out = [
        Section(
            f"Trait projections: {t.title} by condition (mean over {averaged}"
            + ("training runs and " if runs else "")
            + "probes; 95% hierarchical bootstrap: probes"
            + (", training runs" if runs else "")
            + ")",
            (
                "condition",
                "framing",
                *(("steer",) if steered else ()),
                *(("runs",) if runs else ()),
                "probes",
                "mean projection",
                "95% interval",
                *(("run SD", "run range") if runs else ()),
            ),
            tuple(
                (
                    m.condition,
                    m.label,
                    *((_scale(m.steer_scale),) if steered else ()),
                    *((str(m.runs),) if runs else ()),
                    str(m.probes),
                    number(m.mean),
                    "—" if m.interval is None else f"[{m.interval.low:.2f}, {m.interval.high:.2f}]",
                    *(spread_cells(m.run_spread) if runs else ()),
                )
                for m in t.means
            ),
            (
                "projection: the activation at the trait's layer on the trait's unit direction"
                + (
                    ", averaged over the response's tokens"
                    if t.kind == "response"
                    else ", of the prompt's last token (the state the options are scored from)"
                ),
            ),
        )
    ]
    if t.contrasts:
        out.append(
            contrast_section(f"Trait projections: {t.title}, framing contrasts", t.contrasts, runs)
        )
    if t.agreement:
        out.append(
            Section(
                f"Trait projections: {t.title}, agreement with the behavioural measures "
                "(Pearson r, Spearman ρ)",
                ("measure", "across", "n", "r", "ρ"),
                tuple(
                    (
                        g.what,
                        g.level,
                        str(g.n),
                        number(g.pearson),
                        number(g.spearman),
                    )
                    for g in t.agreement
                ),
                tuple(f"{g.what} across {g.level}: {g.sentence}" for g in t.agreement),
            )
        )
    return out


def _scale(scale: float | None) -> str:
    return "—" if scale is None else f"{scale:+g}"
