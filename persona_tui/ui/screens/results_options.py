"""The Results screen's likelihood-probe section, as rich Text (no widgets here).

Log-odds per condition with the hierarchical interval (probes, training runs, options) and,
in a replicated training study, the spread of each condition's runs; each contrast's verdict
(naming the unit), how much of its interval each level adds, the run-level permutation p or
the sentence saying this many runs cannot reach p < 0.05, and the one-run note for a
condition trained once. Everything shown is inert text: ids come from scenario files.
"""

from __future__ import annotations

from rich.text import Text

from persona_tui.analysis.options import (
    OptionContrast,
    OptionsAnalysis,
    interval_nats,
    nats,
    one_run_note,
)
from persona_tui.ui.text import inert

OPTION_VERDICT_STYLE = {"higher": "bold", "lower": "bold", "too few": "italic"}


def options_text(options: OptionsAnalysis) -> Text:
    """The likelihood probes at a glance: log-odds per condition (with the spread between
    training runs), contrasts with the width each level adds, power, lengths."""
    runs = options.replicated
    text = Text("Likelihood probes: ", "bold")
    text.append_text(inert(options.title, "bold"))
    levels = "probes, training runs, options" if runs else "probes and options"
    text.append(f" (nats; 95% bootstrap of {levels})\n", "bold")
    width = max((len(m.condition) for m in options.means), default=0)
    for m in options.means:
        text.append("  ")
        text.append_text(inert(m.condition.ljust(width), "bold"))
        if m.mean is None:
            text.append("  no probes")
        else:
            bounds = "" if m.interval is None else f" {interval_nats(m.interval)}"
            text.append(f"  {nats(m.mean, signed=True):>6}{bounds}  {m.probes} probes")
        if m.run_spread is not None and m.run_spread.sd is not None:
            text.append(
                f", {m.runs} runs SD {nats(m.run_spread.sd)} ({nats(m.run_spread.low, signed=True)}"
                f" to {nats(m.run_spread.high, signed=True)})",
                "dim",
            )
        text.append("\n")
    if options.contrasts:
        text.append("\nContrasts, paired over probes (sign-flip p)\n", "bold")
    for x in options.contrasts:
        text.append("  ")
        text.append_text(inert(f"{x.condition} vs {x.reference}", "bold"))
        text.append(": ")
        text.append_text(inert(x.sentence, OPTION_VERDICT_STYLE.get(x.verdict, "")))
        if x.p_value is not None:
            text.append(", p < 0.001" if x.p_value < 0.001 else f", p = {x.p_value:.3f}")
        text.append("\n")
        text.append_text(inert(f"    {_width_line(x)}\n", "dim"))
        if x.run_test is not None:
            test = x.run_test
            line = f"runs p = {test.p_value:.3g} ({test.method})"
            if x.run_spread is not None:
                line += (
                    f"; run-level differences {nats(x.run_spread.low, signed=True)} to "
                    f"{nats(x.run_spread.high, signed=True)}"
                )
            text.append_text(inert(f"    {line}\n", "dim"))
            if test.limit:
                text.append_text(inert(f"    {test.limit}\n", "dim"))
        if x.single_runs:
            text.append("    ")
            text.append_text(inert(one_run_note(x.single_runs), "dim"))
            text.append("\n")
    if options.contrasts:
        text.append("  ")
        text.append_text(inert(options.power_line, "dim"))
        text.append("\n")
    lengths = " · ".join(f"{t.label} {t.mean_tokens:.1f}" for t in options.tokens)
    text.append("\nMean tokens per option: ")
    text.append_text(inert(lengths))
    for note in options.notes:
        text.append("\nnote: ", "italic")
        text.append_text(inert(note, "italic"))
    return text


def _width_line(x: OptionContrast) -> str:
    """Half-widths by level: "± probes 0.1 · + options 0.1 · + runs 0.8"."""
    probes, options, full = x.half_widths
    parts = [f"± probes {nats(probes)}" if probes is not None else "± probes —"]
    parts.append(f"+ options {nats(options)}" if options is not None else "+ options —")
    if x.runs != (1, 1):
        parts.append(f"+ runs {nats(full)}" if full is not None else "+ runs —")
    return "interval half-width: " + " · ".join(parts)
