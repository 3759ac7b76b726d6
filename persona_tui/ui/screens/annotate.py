"""The Annotate screen: step through a session's trials and annotate from the keyboard.

The scenario's label keys set the label; digits or +/- set the selected scale; `n`
writes a note; arrows move. Every change is saved at once through `SessionStore.annotate`
(an atomic write). Blind mode hides conditions and shuffles the trials reproducibly;
every annotation saved while conditions are hidden records the shuffle seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import events, getters
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from persona_tui.errors import PersonaError
from persona_tui.models.config import Config
from persona_tui.scenario.model import Scenario
from persona_tui.session.annotating import (
    annotation_by,
    blind_seed_for,
    is_done,
    trial_order,
    with_label,
    with_note,
    with_score,
)
from persona_tui.session.model import Annotation, Trial, TrialKey
from persona_tui.session.store import SessionStore
from persona_tui.ui.app_base import PersonaAppBase
from persona_tui.ui.screens.dialogs import InfoDialog, TextPrompt
from persona_tui.ui.text import inert


class AnnotateScreen(Screen[None]):
    """One trial at a time: probe, condition (unless blind), response, and its annotation."""

    app = getters.app(PersonaAppBase)
    CSS_PATH = "annotate.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "move(-1)", "Prev"),
        Binding("right,enter", "move(1)", "Next", key_display="→"),
        Binding("tab", "select_scale(1)", "Scale", show=False),
        Binding("shift+tab", "select_scale(-1)", "Prev scale", show=False),
        Binding("plus,equals_sign", "score(1)", "+1", key_display="+", show=False),
        Binding("minus", "score(-1)", "-1", key_display="-", show=False),
        Binding("n", "note", "Note"),
        Binding("backspace", "clear_label", "Clear label", show=False),
        Binding("up", "scroll(-1)", "Scroll up", show=False),
        Binding("down", "scroll(1)", "Scroll down", show=False),
        Binding("pageup", "scroll(-10)", "Page up", show=False),
        Binding("pagedown", "scroll(10)", "Page down", show=False),
        Binding("ctrl+u", "toggle_unannotated", "Unannotated only"),
        Binding("ctrl+r", "reveal", "Reveal"),
        Binding("ctrl+o", "compare", "Compare"),
        Binding("ctrl+g", "results", "Results", show=False),
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(
        self,
        store: SessionStore,
        scenario: Scenario,
        config: Config,
        *,
        blind: bool = False,
        blind_seed: int | None = None,
        owns_store: bool = False,
    ) -> None:
        super().__init__()
        self.store = store
        self.scenario = scenario
        self.schema = scenario.annotation
        self.annotator = config.annotator
        self.blind = blind
        self.revealed = False
        self.owns_store = owns_store
        self._explicit_seed = blind_seed
        self.blind_seed: int | None = None
        self.only_unannotated = False
        self.order: list[TrialKey] = []
        self.index = 0
        self.scale_index = 0
        self._labels = {label.key: label for label in self.schema.labels}

    def compose(self) -> ComposeResult:
        yield Static("", id="annotate-status")
        yield Static("", id="annotate-probe")
        yield Static("", id="annotate-condition")
        with VerticalScroll(id="annotate-response", can_focus=False):
            yield Static("", id="annotate-response-text")
        yield Static("", id="annotate-panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#annotate-response", VerticalScroll).can_focus = False
        if self.annotator:
            self._start()
        else:
            self.app.push_screen(
                TextPrompt(
                    "Your name, recorded with every annotation (asked once; saved in config)",
                    placeholder="e.g. ada",
                ),
                self._got_annotator,
            )

    def _got_annotator(self, name: str | None) -> None:
        name = (name or "").strip()
        if not name:
            self.notify("an annotator name is needed to annotate", severity="warning")
            self.dismiss()
            return
        self.annotator = name
        self.app.set_config(annotator=name)
        self._start()

    def _start(self) -> None:
        session = self.store.session
        if self.blind:
            seed = self._explicit_seed
            self.blind_seed = (
                seed if seed is not None else blind_seed_for(session.header.id, self.annotator)
            )
        self.order = trial_order(session.trials, session.header.plan, self.blind_seed)
        self.index = 0
        self.render_trial()

    # State ------------------------------------------------------------------------------

    def _trials(self) -> dict[TrialKey, Trial]:
        return {t.key: t for t in self.store.session.trials}

    @property
    def current(self) -> Trial | None:
        if not self.order:
            return None
        return self._trials().get(self.order[self.index])

    @property
    def hidden(self) -> bool:
        return self.blind and not self.revealed

    @property
    def recorded_seed(self) -> int | None:
        """The `blind_seed` to save with an annotation: the shuffle seed while conditions are
        hidden; None when they are visible (not blind, or revealed), as the judgement is then
        no longer blind."""
        return self.blind_seed if self.hidden else None

    def _mine(self, trial: Trial) -> Annotation | None:
        return annotation_by(trial, self.annotator)

    # Rendering --------------------------------------------------------------------------

    def render_trial(self) -> None:
        """Show the current trial and its annotation by this annotator."""
        trials = self._trials()
        done = sum(1 for k in self.order if is_done(self._mine(trials[k]), self.schema))
        status = [
            f"trial {self.index + 1}/{len(self.order)}" if self.order else "no trials yet",
            f"{done}/{len(self.order)} annotated by {self.annotator or '?'}",
            "unannotated only" if self.only_unannotated else "all trials",
        ]
        if self.blind:
            status.append("revealed" if self.revealed else f"blind · seed {self.blind_seed}")
        self.query_one("#annotate-status", Static).update(inert(" · ".join(status)))
        trial = self.current
        if trial is None:
            for name in ("#annotate-probe", "#annotate-condition", "#annotate-response-text"):
                self.query_one(name, Static).update("")
            self.query_one("#annotate-panel", Static).update(self._panel(None))
            return
        probe = self.scenario.probe(trial.probe)
        head = Text(f"{trial.probe} #{trial.sample + 1}: ", style="bold")
        head.append_text(inert(probe.text))
        self.query_one("#annotate-probe", Static).update(head)
        self.query_one("#annotate-condition", Static).update(self._condition_text(trial))
        self.query_one("#annotate-response-text", Static).update(self._response_text(trial))
        self.query_one("#annotate-response", VerticalScroll).scroll_home(animate=False)
        self.query_one("#annotate-panel", Static).update(self._panel(self._mine(trial)))

    def _condition_text(self, trial: Trial) -> Text:
        if self.hidden:
            return Text("condition: hidden (blind) · ctrl+r reveals", style="italic")
        condition = self.scenario.condition(trial.condition)
        text = Text("condition: ", style="bold")
        text.append_text(inert(condition.label or condition.id))
        if trial.replicate:
            text.append(f" · training run {trial.replicate}")
        if condition.note:
            text.append(" · ")
            text.append_text(inert(condition.note))
        return text

    def _response_text(self, trial: Trial) -> Text:
        probe = self.scenario.probe(trial.probe)
        text = Text()
        for user, answer in zip(probe.turns[:-1], trial.turn_responses, strict=False):
            text.append("User: ", style="bold")
            text.append_text(inert(user + "\n"))
            text.append("Assistant: ", style="bold")
            text.append_text(inert(answer.strip() + "\n\n"))
        text.append_text(inert(trial.response))
        text.append(f"\n\n[{trial.finish_reason} · {trial.completion_tokens} tokens]", "dim")
        return text

    def _panel(self, mine: Annotation | None) -> Text:
        text = Text()
        if self.schema.labels:
            text.append("label ", style="bold")
            for label in self.schema.labels:
                chosen = mine is not None and mine.label == label.id
                style = "reverse bold" if chosen else ""
                text.append(f" {label.key} ", style="bold " + ("reverse" if chosen else ""))
                text.append(f"{label.id}  ", style=style if chosen else "")
            text.append("\n")
        for i, scale in enumerate(self.schema.scales):
            selected = i == self.scale_index
            value = mine.scores.get(scale.id) if mine is not None else None
            text.append("▸ " if selected else "  ", style="bold")
            text.append(f"{scale.id} ", style="bold" if selected else "")
            text.append(f"[{scale.min}..{scale.max}] ", style="dim")
            text.append("–" if value is None else str(value), style="bold")
            text.append("   ")
        if self.schema.scales:
            text.append("(digits, +/-, tab)\n", style="dim")
        if self.schema.notes:
            text.append("note: ", style="bold")
            text.append_text(inert(mine.note if mine and mine.note else "–  (n to write)"))
        return text

    def palette_commands(self) -> Iterator[SystemCommand]:
        """The scenario's label keys, for the command palette (the footer shows fixed keys)."""
        for label in self.schema.labels:
            yield SystemCommand(
                f"Label: {label.id}",
                f"key: {label.key}" + (f" · {label.description}" if label.description else ""),
                partial(self._set_label, label.id),
            )

    def _set_label(self, label: str) -> None:
        if self.current is not None and self.annotator:
            mine = self._mine(self.current)
            self._save(with_label(mine, self.annotator, label, blind_seed=self.recorded_seed))

    # Saving -----------------------------------------------------------------------------

    def _save(self, annotation: Annotation) -> None:
        trial = self.current
        if trial is None:
            return
        try:
            self.store.annotate(trial.key, annotation)
        except PersonaError as error:
            self.notify(str(error), title="Annotation not saved", severity="error", timeout=10)
        self.render_trial()

    def on_key(self, event: events.Key) -> None:
        char = event.character
        trial = self.current
        if trial is None or char is None or not self.annotator:
            return
        if char in self._labels:
            event.stop()
            label = self._labels[char].id
            mine = self._mine(trial)
            new_label = "" if mine is not None and mine.label == label else label
            self._save(with_label(mine, self.annotator, new_label, blind_seed=self.recorded_seed))
        elif char.isdigit() and len(char) == 1 and self.schema.scales:
            event.stop()
            scale = self.schema.scales[self.scale_index]
            mine = self._mine(trial)
            seed = self.recorded_seed
            self._save(with_score(mine, self.annotator, scale, int(char), blind_seed=seed))

    # Actions ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "reveal":
            return self.blind and not self.revealed
        if action in ("compare", "results"):
            return not self.hidden
        if action in ("select_scale", "score"):
            return bool(self.schema.scales)
        return True

    def action_move(self, step: int) -> None:
        """Go to the previous/next trial (skipping annotated ones in the unannotated filter)."""
        if not self.order:
            return
        trials = self._trials()
        index = self.index
        for _ in range(len(self.order)):
            index = (index + step) % len(self.order)
            if not self.only_unannotated:
                break
            if not is_done(self._mine(trials[self.order[index]]), self.schema):
                break
        else:
            self.notify("every trial is annotated", title="Unannotated only")
            return
        self.index = index
        self.render_trial()

    def action_select_scale(self, step: int) -> None:
        self.scale_index = (self.scale_index + step) % len(self.schema.scales)
        self.render_trial()

    def action_score(self, step: int) -> None:
        trial = self.current
        if trial is None or not self.annotator:
            return
        scale = self.schema.scales[self.scale_index]
        mine = self._mine(trial)
        value = mine.scores.get(scale.id) if mine is not None else None
        start = (scale.min if step > 0 else scale.max) if value is None else value + step
        self._save(with_score(mine, self.annotator, scale, start, blind_seed=self.recorded_seed))

    def action_clear_label(self) -> None:
        trial = self.current
        if trial is not None and self.annotator:
            mine = self._mine(trial)
            self._save(with_label(mine, self.annotator, "", blind_seed=self.recorded_seed))

    def action_note(self) -> None:
        trial = self.current
        if trial is None or not self.annotator:
            return
        mine = self._mine(trial)

        def save(note: str | None) -> None:
            if note is not None:
                mine = self._mine(trial)
                seed = self.recorded_seed
                self._save(with_note(mine, self.annotator, note, blind_seed=seed))

        self.app.push_screen(TextPrompt("Note on this response", mine.note if mine else ""), save)

    def action_scroll(self, lines: int) -> None:
        body = self.query_one("#annotate-response", VerticalScroll)
        body.scroll_relative(y=lines, animate=False)

    def action_toggle_unannotated(self) -> None:
        self.only_unannotated = not self.only_unannotated
        trial = self.current
        if self.only_unannotated and trial is not None and is_done(self._mine(trial), self.schema):
            self.action_move(1)
        self.render_trial()

    def action_reveal(self) -> None:
        """End blindness: show conditions, and a summary of labels per condition."""
        self.revealed = True
        self.refresh_bindings()
        self.render_trial()
        self.app.push_screen(InfoDialog("Blind annotation revealed", self._reveal_summary()))

    def _reveal_summary(self) -> Text:
        counts: dict[str, dict[str, int]] = {}
        for trial in self.store.session.trials:
            mine = self._mine(trial)
            label = mine.label if mine is not None and mine.label else "(none)"
            per = counts.setdefault(trial.condition, {})
            per[label] = per.get(label, 0) + 1
        text = Text(f"shuffle seed {self.blind_seed}\n\n")
        for condition_id, per in counts.items():
            condition = self.scenario.condition(condition_id)
            text.append_text(inert(condition.label or condition.id, "bold"))
            text.append(": " + ", ".join(f"{k} {v}" for k, v in sorted(per.items())) + "\n")
        return text

    def action_compare(self) -> None:
        from persona_tui.ui.screens.compare import CompareScreen

        trial = self.current
        self.app.push_screen(
            CompareScreen(self.store.session, self.scenario, trial.probe if trial else None)
        )

    def action_results(self) -> None:
        from persona_tui.ui.screens.results import ResultsScreen

        self.app.push_screen(ResultsScreen([self.store.path]))

    def action_back(self) -> None:
        self.release()
        self.dismiss()

    def on_unmount(self) -> None:
        self.release()

    def release(self) -> None:
        """Close the session store if this screen opened it (unlocks the file)."""
        if self.owns_store:
            self.store.close()
            self.owns_store = False
