"""Home: scenarios, the model to run them on, and recent sessions."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option

from persona_tui.backend_names import AUTO
from persona_tui.errors import PersonaError, ScenarioError
from persona_tui.scenario.model import Scenario
from persona_tui.session.index import SessionSummary, list_sessions
from persona_tui.training.adapter_choice import AdapterChoice, adapter_choices, model_sha256
from persona_tui.training.locate import training_model_path
from persona_tui.ui.app_base import PersonaAppBase
from persona_tui.ui.screens.sessions import SessionTable
from persona_tui.ui.text import inert

RECENT = 8


class HomeScreen(Screen[None]):
    """Start a run, resume an interrupted session, or open a session to annotate."""

    app = getters.app(PersonaAppBase)
    CSS_PATH = "home.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "run", "Run", show=False),
        Binding("m", "pick_model", "Model"),
        Binding("t", "train", "Train"),
        Binding("p", "choose_adapters", "Adapters", show=False),
        Binding("s", "sessions", "Sessions"),
        Binding("a", "annotate(False)", "Annotate"),
        Binding("b", "annotate(True)", "Blind"),
        Binding("r", "resume", "Resume"),
        Binding("c", "compare", "Compare", show=False),
        Binding("v", "results", "Results"),
        Binding("ctrl+l", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.scenarios: list[Scenario] = []
        self.broken: list[str] = []
        self.model = ""
        self.backend = AUTO  # or the engine chosen in the model picker (b)
        # A training study's adapters chosen with p, by scenario id (the others: the default
        # folder of `persona-tui train`), and what was found for them, by (scenario, model).
        self.adapters: dict[str, dict[str, Path]] = {}
        self.adapter_states: dict[tuple[str, str], tuple[AdapterChoice, ...] | str] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="home-bar")
        with Horizontal(id="home-top"):
            yield OptionList(id="scenario-list")
            with VerticalScroll(id="scenario-details", can_focus=False):
                yield Static("", id="scenario-text")
        yield Static(
            "Recent sessions · enter: annotate · r: resume · b: blind", classes="section-title"
        )
        yield SessionTable(id="recent")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.model = self.app.config.default_model
        self.query_one("#scenario-list").border_title = "Scenarios · enter: run"
        self.action_reload()

    def on_screen_resume(self) -> None:
        self._load_sessions()
        self.adapter_states.clear()  # a training run may have made adapters meanwhile
        index = self.query_one("#scenario-list", OptionList).highlighted
        self._show_scenario(index if index is not None else 0)

    def action_reload(self) -> None:
        self._load_scenarios()
        self._load_sessions()
        self._update_bar()

    def _update_bar(self) -> None:
        annotator = self.app.config.annotator or "not set"
        text = Text("persona-tui", style="bold")
        text.append("  model ")
        text.append_text(inert(self.model, "bold"))
        if self.backend != AUTO:
            text.append_text(inert(f" on {self.backend}"))
        text.append("  annotator ")
        text.append_text(inert(annotator, "bold"))
        text.append("  · m: model · ctrl+p: commands", style="dim")
        self.query_one("#home-bar", Static).update(text)

    # Scenarios ------------------------------------------------------------------------

    def _load_scenarios(self) -> None:
        from persona_tui.scenario.catalog import list_scenarios

        self.scenarios, self.broken = [], []
        options = self.query_one("#scenario-list", OptionList)
        options.clear_options()
        for entry in list_scenarios():
            scenario = entry.scenario
            if isinstance(scenario, ScenarioError):
                self.broken.append(str(scenario))
                continue
            self.scenarios.append(scenario)
            prompt = inert(scenario.title or scenario.id)
            if entry.origin == "user":
                prompt.append(" (user)", style="dim")
            options.add_option(Option(prompt, id=f"s{len(self.scenarios) - 1}"))
        if self.broken:
            self.notify("\n".join(self.broken), title="Broken scenario files", severity="error")
        if self.scenarios:
            options.highlighted = 0
            options.focus()
        self._show_scenario(0)

    def selected_scenario(self) -> Scenario | None:
        index = self.query_one("#scenario-list", OptionList).highlighted
        if index is None or not 0 <= index < len(self.scenarios):
            return None
        return self.scenarios[index]

    @on(OptionList.OptionHighlighted, "#scenario-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show_scenario(event.option_index)

    @on(OptionList.OptionSelected, "#scenario-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.action_run()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("train", "choose_adapters"):  # shown for training studies only
            scenario = self.selected_scenario()
            return scenario is not None and scenario.training is not None
        return True

    def _show_scenario(self, index: int) -> None:
        self.refresh_bindings()
        target = self.query_one("#scenario-text", Static)
        if not 0 <= index < len(self.scenarios):
            target.update("No scenarios found.")
            return
        s = self.scenarios[index]
        text = inert(s.title or s.id, "bold")
        text.append(f"  {s.id}\n", style="dim")
        text.append_text(inert(s.description.strip() + "\n"))
        if s.study is not None:
            text.append("follows ", style="dim")
            text.append_text(inert(s.study.title + "\n", "italic"))
        samples = s.sampling.samples
        options = sum(len(p.options) for p in s.probes) * len(s.conditions)
        text.append(
            f"\n{len(s.conditions)} conditions × {len(s.probes)} probes × "
            f"{samples} {'sample' if samples == 1 else 'samples'} = "
            f"{len(s.conditions) * len(s.probes) * samples} trials"
            + (f", {options} options to score" if options else "")
            + "\n",
            style="bold",
        )
        for condition in s.conditions:
            text.append("• ")
            text.append_text(inert(condition.label or condition.id))
            if s.training is not None:
                text.append(" (LoRA adapter)" if condition.training else " (base model)", "dim")
            text.append("\n")
        if s.training is not None:
            text.append(
                f"\nA training study: {len(s.training.examples)} training examples "
                f"per framing · t: train the adapters · p: choose them\n",
                style="italic",
            )
            text.append_text(self._adapter_lines(s))
        target.update(text)

    def _adapter_lines(self, scenario: Scenario) -> Text:
        """Which adapter each training condition will be probed with (checked in a worker)."""
        state = self.adapter_states.get((scenario.id, self.model))
        text = Text("\nAdapters:\n", style="bold")
        if state is None:
            text.append("  checking …\n", style="italic")
            self._check_adapters(scenario, self.model, dict(self.adapters.get(scenario.id, {})))
        elif isinstance(state, str):
            text.append("  ")
            text.append_text(inert(state, "red"))
            text.append("\n")
        else:
            from persona_tui.ui.screens.adapters import choice_text

            for choice in state:
                text.append("• ")
                text.append_text(inert(choice.condition, "bold"))
                text.append(" (chosen): " if choice.chosen else ": ", style="dim")
                text.append_text(choice_text(choice))
                text.append("\n")
        return text

    @work(thread=True, exclusive=True, exit_on_error=False, group="adapters")
    def _check_adapters(self, scenario: Scenario, model: str, chosen: dict[str, Path]) -> None:
        state: tuple[AdapterChoice, ...] | str
        try:
            model_path = training_model_path(model, self.app.config)
            state = adapter_choices(scenario, model_path, model_sha256(model_path), chosen)
        except PersonaError as error:
            state = str(error)
        self.app.call_from_thread(self._adapters_checked, scenario.id, model, state)

    def _adapters_checked(
        self, scenario_id: str, model: str, state: tuple[AdapterChoice, ...] | str
    ) -> None:
        self.adapter_states[(scenario_id, model)] = state
        current = self.selected_scenario()
        if current is not None and current.id == scenario_id and model == self.model:
            index = self.query_one("#scenario-list", OptionList).highlighted
            self._show_scenario(index if index is not None else 0)

    # Actions ----------------------------------------------------------------------------

    def action_run(self) -> None:
        scenario = self.selected_scenario()
        if scenario is None:
            self.notify("choose a scenario first", severity="warning")
            return
        self.app.start_run(
            scenario, self.model, backend=self.backend, adapters=self.adapters.get(scenario.id)
        )

    def action_choose_adapters(self) -> None:
        """Choose the folder of each training condition's adapter for the next run."""
        from persona_tui.ui.screens.adapters import AdapterDialog

        scenario = self.selected_scenario()
        if scenario is None or scenario.training is None:
            self.notify("choose a training study first", severity="warning")
            return

        def chosen(paths: dict[str, Path] | None) -> None:
            if paths is None:
                return
            self.adapters[scenario.id] = paths
            self.adapter_states.pop((scenario.id, self.model), None)
            index = self.query_one("#scenario-list", OptionList).highlighted
            self._show_scenario(index if index is not None else 0)

        dialog = AdapterDialog(scenario, self.model, self.adapters.get(scenario.id, {}))
        self.app.push_screen(dialog, chosen)

    def action_train(self) -> None:
        """Fine-tune the selected training study's adapters (resumes a cancelled run)."""
        scenario = self.selected_scenario()
        if scenario is None:
            self.notify("choose a scenario first", severity="warning")
            return
        self.app.start_training(scenario, self.model)

    def action_pick_model(self) -> None:
        from persona_tui.ui.screens.model_picker import ModelChoice, ModelPicker

        def chosen(choice: ModelChoice | None) -> None:
            if choice is not None and choice.ref:
                self.model, self.backend = choice.ref, choice.backend
                self.app.set_config(default_model=choice.ref)
                self._update_bar()
                index = self.query_one("#scenario-list", OptionList).highlighted
                self._show_scenario(index if index is not None else 0)

        picker = ModelPicker(self.app.config, self.backend)
        self.app.push_screen(picker, chosen)

    def action_sessions(self) -> None:
        from persona_tui.ui.screens.sessions import SessionBrowser

        self.app.push_screen(SessionBrowser())

    def _selected_session(self) -> SessionSummary | None:
        return self.query_one("#recent", SessionTable).selected

    def action_annotate(self, blind: bool) -> None:
        summary = self._selected_session()
        if summary is not None and not summary.error:
            self.app.open_annotation(summary.path, blind=blind)

    def action_resume(self) -> None:
        summary = self._selected_session()
        if summary is None or summary.error:
            return
        if summary.status == "complete":
            self.notify("this session is complete; nothing to resume")
            return
        self.app.start_run(None, None, resume=summary.path)

    def action_compare(self) -> None:
        from persona_tui.ui.screens.compare import open_compare

        summary = self._selected_session()
        if summary is not None and not summary.error:
            open_compare(self, summary.path)

    def action_results(self) -> None:
        from persona_tui.ui.screens.results import ResultsScreen

        summary = self._selected_session()
        if summary is not None and not summary.error:
            self.app.push_screen(ResultsScreen([summary.path]))

    @on(DataTable.RowSelected, "#recent")
    def _session_chosen(self) -> None:
        self.action_annotate(False)

    @work(thread=True, exclusive=True, exit_on_error=False, group="sessions")
    def _load_sessions(self) -> None:
        summaries = list_sessions()[:RECENT]
        self.app.call_from_thread(self.query_one("#recent", SessionTable).show, summaries)
