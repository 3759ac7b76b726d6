"""The likelihood-probe sections of a report, from an `OptionsAnalysis`.

Log-odds by condition (with the spread between training runs in a replicated study), per
probe, the framing contrasts with their verdicts, how much of each interval's width each
level of the design adds (probes, options, training runs), and option lengths. The
sections are `report.Section`s, written in every format by `report.render`.
"""

from __future__ import annotations

from collections.abc import Sequence

from persona_tui.analysis.options import OptionContrast, OptionsAnalysis
from persona_tui.analysis.replicates import Spread
from persona_tui.analysis.report_cells import Section, number, p_text


def option_sections(options: OptionsAnalysis) -> list[Section]:
    """The likelihood-probe tables: log-odds by condition, per probe, contrasts, the
    interval's width by level, option lengths."""
    o = options
    a, b = o.label_a, o.label_b
    runs = o.replicated
    out = [
        Section(
            f"Likelihood probes: {o.title} by condition (mean over "
            + ("training runs and " if runs else "")
            + "probes, in nats; 95% hierarchical bootstrap: probes, "
            + ("training runs, " if runs else "")
            + "options)",
            (
                "condition",
                "framing",
                *(("runs",) if runs else ()),
                "probes",
                "mean log-odds",
                "95% interval",
                *(("run SD", "run range") if runs else ()),
            ),
            tuple(
                (
                    m.condition,
                    m.label,
                    *((str(m.runs),) if runs else ()),
                    str(m.probes),
                    number(m.mean),
                    "—" if m.interval is None else f"[{m.interval.low:.2f}, {m.interval.high:.2f}]",
                    *(spread_cells(m.run_spread) if runs else ()),
                )
                for m in o.means
            ),
            (
                f"per probe: log-odds = log-mean-exp of the log-probabilities of the '{a}' "
                f"options − that of the '{b}' options; above 0 the model puts more "
                f"probability on the '{a}' answers ("
                + ("labels chosen with --labels" if o.labels_given else "default labels")
                + ")",
                *(
                    (
                        "run SD, run range: the spread of the training runs' mean log-odds "
                        "(each run's mean over the probes): the noise between training runs",
                    )
                    if runs
                    else ()
                ),
            ),
        ),
        Section(
            f"Likelihood probes: {o.title} per probe"
            + (" (mean over training runs)" if runs else ""),
            ("probe", *(c.id for c in o.conditions)),
            tuple(
                (
                    probe,
                    *(
                        "—" if (v := o.log_odds(c.id, probe)) is None else f"{v:.2f}"
                        for c in o.conditions
                    ),
                )
                for probe in o.probes
            ),
        ),
    ]
    if o.contrasts:
        out.append(
            contrast_section(
                "Likelihood probes: framing contrasts in log-odds",
                o.contrasts,
                runs,
                (_options_conclusion(o),),
            )
        )
        out.append(width_section(o))
    out.append(
        Section(
            "Likelihood probes: option length by label",
            ("label", "options", "mean tokens"),
            tuple((t.label, str(t.options), f"{t.mean_tokens:.1f}") for t in o.tokens),
            o.notes,
        )
    )
    return out


def contrast_section(
    title: str, contrasts: Sequence[OptionContrast], runs: bool, conclusion: tuple[str, ...] = ()
) -> Section:
    """The table of paired framing contrasts (log-odds or trait projections): difference,
    interval, sign-flip p, the run-level p when the design has training runs, and each
    contrast's verdict sentence."""
    return Section(
        f"{title} (paired over probes; 95% hierarchical bootstrap interval; two-sided "
        "sign-flip permutation p over probes" + ("; run-level permutation p" if runs else "") + ")",
        (
            "condition",
            "against",
            "probes",
            "difference",
            "95% interval",
            "p",
            *(("runs p",) if runs else ()),
            "higher on",
        ),
        tuple(
            (
                x.condition,
                x.reference,
                str(x.probes),
                "—" if x.difference is None else f"{x.difference:+.2f}",
                "—" if x.interval is None else f"[{x.interval.low:+.2f}, {x.interval.high:+.2f}]",
                p_text(x.p_value) + ("" if x.exact or x.p_value is None else " (random)"),
                *((run_p_cell(x),) if runs else ()),
                f"{x.higher}/{x.probes}",
            )
            for x in contrasts
        ),
        (
            *(
                f"{x.condition} vs {x.reference}: {x.sentence}"
                + (f"; {x.explanation}" if x.explanation else "")
                for x in contrasts
            ),
            *conclusion,
        ),
    )


def width_section(o: OptionsAnalysis) -> Section:
    """How much of each contrast's interval width comes from each level of the design."""
    runs = o.replicated
    rows = []
    for x in o.contrasts:
        probes, options, full = x.half_widths
        rows.append(
            (
                f"{x.condition} vs {x.reference}",
                _pm(probes),
                _pm(options),
                *((_pm(full), *spread_cells(x.run_spread)) if runs else ()),
            )
        )
    return Section(
        "Likelihood probes: interval half-width by level (nats; what each level of the "
        "design adds)",
        (
            "contrast",
            "probes",
            "+ options",
            *(("+ training runs", "run diff SD", "run diff range") if runs else ()),
        ),
        tuple(rows),
        (
            "probes: resampling the probes alone (the interval before options and runs were "
            "levels); + options: the options of each label resampled within each probe too; "
            + (
                "+ training runs: each replicated condition's runs resampled as well (the "
                "interval of the verdict); run diff: the spread of the differences between "
                "every training run of one condition and every run of the other"
                if runs
                else "the interval of the verdict"
            ),
        ),
    )


def _pm(value: float | None) -> str:
    return "—" if value is None else f"±{value:.2f}"


def spread_cells(spread: Spread | None) -> tuple[str, str]:
    if spread is None:
        return "—", "—"
    sd = "—" if spread.sd is None else f"{spread.sd:.2f}"
    return sd, f"{spread.low:+.2f} to {spread.high:+.2f}"


def run_p_cell(x: OptionContrast) -> str:
    test = x.run_test
    if test is None:
        return "—"
    text = p_text(test.p_value) + ("" if test.exact else " (random)")
    return text if test.can_reach else f"{text} (min {test.smallest_p:.2g})"


def _options_conclusion(o: OptionsAnalysis) -> str:
    claims = [x for x in o.contrasts if x.verdict in ("higher", "lower")]
    if claims:
        return f"{len(claims)} of {len(o.contrasts)} contrasts show a difference; " + o.power_line
    return f"no framing changed the {o.title} detectably: {o.power_line}"
