"""The Results screen's trait-projection section, as rich Text (no widgets here).

Per trait and kind (responses: the mean over a response's tokens; prompts: the prompt's
last token): the mean projection per condition with its hierarchical interval (and the
spread of a replicated condition's training runs, a steered condition's scale), each
framing contrast's verdict with its interval, and the agreement lines: the correlation with
the option log-odds and with the label rates, saying when n is too small to mean anything.
Everything shown is inert text: ids come from scenario files.
"""

from __future__ import annotations

from rich.text import Text

from persona_tui.analysis.option_contrasts import figure
from persona_tui.analysis.projections import DECIMALS, ProjectionsAnalysis, TraitProjections
from persona_tui.ui.screens.results_options import OPTION_VERDICT_STYLE
from persona_tui.ui.text import inert


def projections_text(projections: ProjectionsAnalysis) -> Text:
    """Every trait and kind: a small table of conditions, the contrasts, the agreement."""
    text = Text()
    for n, trait in enumerate(projections.traits):
        if n:
            text.append("\n")
        text.append_text(trait_text(trait))
    for note in projections.notes:
        text.append("\nnote: ", "italic")
        text.append_text(inert(note, "italic"))
    return text


def _num(value: float, signed: bool = False) -> str:
    return figure(value, signed, DECIMALS)


def trait_text(t: TraitProjections) -> Text:
    """One trait and kind."""
    levels = "probes, training runs" if t.replicated else "probes"
    text = Text("Trait projections: ", "bold")
    text.append_text(inert(t.title, "bold"))
    text.append(f" (95% bootstrap of {levels})\n", "bold")
    width = max((len(m.condition) for m in t.means), default=0)
    for m in t.means:
        text.append("  ")
        text.append_text(inert(m.condition.ljust(width), "bold"))
        if m.mean is None:
            text.append("  no probes")
        else:
            bounds = (
                "" if m.interval is None else f" [{_num(m.interval.low)}, {_num(m.interval.high)}]"
            )
            text.append(f"  {_num(m.mean, signed=True):>7}{bounds}  {m.probes} probes")
        if m.steer_scale is not None:
            text.append(f", steered ×{m.steer_scale:+g}", "dim")
        if m.run_spread is not None and m.run_spread.sd is not None:
            low, high = _num(m.run_spread.low, True), _num(m.run_spread.high, True)
            text.append(f", {m.runs} runs SD {_num(m.run_spread.sd)} ({low} to {high})", "dim")
        text.append("\n")
    for x in t.contrasts:
        text.append("  ")
        text.append_text(inert(f"{x.condition} vs {x.reference}", "bold"))
        text.append(": ")
        text.append_text(inert(x.sentence, OPTION_VERDICT_STYLE.get(x.verdict, "")))
        if x.p_value is not None:
            text.append(", p < 0.001" if x.p_value < 0.001 else f", p = {x.p_value:.3f}")
        text.append("\n")
        if x.run_test is not None:
            test = x.run_test
            text.append_text(inert(f"    runs p = {test.p_value:.3g} ({test.method})\n", "dim"))
    for g in t.agreement:
        text.append("  agreement with ", "italic")
        text.append_text(inert(f"{g.what} across {g.level}: {g.sentence}", "italic"))
        text.append("\n")
    return text
