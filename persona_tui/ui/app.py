"""The Textual app: an app factory used by the CLI and the tests, and `run_app`.

`persona-tui` opens Home; `persona-tui tui --scenario ID --model M` opens the Run screen
directly; `persona-tui annotate SESSION` opens the Annotate screen. Themes come from TOML
files (see `themes.py`); the chosen theme is saved in the user config.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.theme import Theme

from persona_tui.backend_names import AUTO
from persona_tui.errors import PersonaError
from persona_tui.models.config import Config, load_config, update_config
from persona_tui.run.loading import ModelLoader
from persona_tui.ui.app_base import PersonaAppBase
from persona_tui.ui.themes import DEFAULT_THEME, ThemeSet, load_themes


@dataclass(frozen=True)
class StartSpec:
    """Which screen the app opens on, on top of Home."""

    scenario: str | None = None
    model: str | None = None
    annotate: Path | None = None
    blind: bool = False
    backend: str = AUTO


class PersonaApp(PersonaAppBase):
    """persona-tui: run persona scenarios side by side, annotate, compare, browse sessions."""

    TITLE = "persona-tui"
    CSS_PATH = "app.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "show_help_panel", "Keys", show=False),
    ]

    def __init__(
        self,
        *,
        config: Config,
        themes: ThemeSet,
        start: StartSpec = StartSpec(),
        loader: ModelLoader | None = None,
        clock: Callable[[], float] = time.monotonic,
        persist_theme: bool = True,
        config_problem: str = "",
    ) -> None:
        super().__init__()
        self.config = config
        self.theme_set = themes
        self.start = start
        self.loader = loader
        self.clock = clock
        self.persist_theme = persist_theme
        self.config_problem = config_problem
        for theme in themes.themes:
            self.register_theme(theme)
        wanted = config.theme if config.theme in themes.names else DEFAULT_THEME
        if wanted in self.available_themes:
            self.theme = wanted

    def get_default_screen(self) -> Screen[Any]:
        from persona_tui.ui.screens.home import HomeScreen

        return HomeScreen()

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._save_theme)
        problems = list(self.theme_set.problems)
        if self.config.theme not in self.available_themes:
            problems.append(
                f"theme {self.config.theme!r} from the config is not known; using {self.theme!r}"
            )
        if problems:
            self.notify("\n".join(problems), title="Theme problems", severity="error", timeout=15)
        if self.config_problem:
            self.notify(self.config_problem, title="Config", severity="error", timeout=15)
        self._open_start_screen()

    def _open_start_screen(self) -> None:
        start = self.start
        if start.annotate is not None:
            self.open_annotation(start.annotate, blind=start.blind)
        elif start.scenario is not None:
            from persona_tui.scenario.catalog import resolve_scenario
            from persona_tui.scenario.parse import load_scenario

            try:
                scenario = load_scenario(resolve_scenario(start.scenario))
            except PersonaError as error:
                self.notify(str(error), title="Scenario", severity="error", timeout=15)
                return
            self.start_run(scenario, start.model, backend=start.backend)

    # Navigation used by several screens -------------------------------------------------

    def start_run(
        self,
        scenario: object,
        model: str | None,
        resume: Path | None = None,
        *,
        backend: str = AUTO,
        adapters: Mapping[str, Path] | None = None,
        replicates: int | None = None,
    ) -> None:
        """Open the Run screen on a new run of `scenario` or on resuming `resume`.

        `backend` is "auto" (decided from the model) or the engine to load it with;
        `adapters` names a training study's adapters by condition (the others: the default
        folder of `persona-tui train`), `replicates` its training runs per condition (None:
        the scenario's).
        """
        from persona_tui.scenario.model import Scenario
        from persona_tui.ui.screens.run import RunRequest, RunScreen

        request = RunRequest(
            model=model,
            scenario=scenario if isinstance(scenario, Scenario) else None,
            resume=resume,
            backend=backend,
            adapters=dict(adapters or {}),
            replicates=replicates,
        )
        self.push_screen(RunScreen(request, self.config, self.loader))

    def start_training(self, scenario: object, model: str | None) -> None:
        """Open the Training screen: fine-tune a training study's adapters on `model`."""
        from persona_tui.scenario.model import Scenario
        from persona_tui.ui.screens.train import TrainRequest, TrainScreen

        if not isinstance(scenario, Scenario) or scenario.training is None:
            self.notify(
                "not a training study: train a scenario with a [training] table",
                severity="warning",
            )
            return
        self.push_screen(TrainScreen(TrainRequest(scenario, model), self.config))

    def open_annotation(self, path: Path, *, blind: bool = False) -> None:
        """Open the Annotate screen on a session file (locks it while open)."""
        from persona_tui.run.lifecycle import open_session
        from persona_tui.ui.screens.annotate import AnnotateScreen

        try:
            scenario, store = open_session(path)
        except PersonaError as error:
            self.notify(str(error), title="Cannot open the session", severity="error", timeout=15)
            return
        self.push_screen(AnnotateScreen(store, scenario, self.config, blind=blind, owns_store=True))

    def set_config(self, **changes: str) -> None:
        """Save top-level config keys (annotator, theme, default_model) and keep them in memory."""
        try:
            self.config = update_config(self.config.path, **changes)
        except PersonaError as error:
            self.config = replace(self.config, **changes)  # type: ignore[arg-type]
            self.notify(str(error), title="Config not saved", severity="error", timeout=10)

    def _save_theme(self, theme: Theme) -> None:
        if self.persist_theme and theme.name != self.config.theme:
            self.set_config(theme=theme.name)

    # Command palette ------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Textual's commands, every theme by name, and every key of the current screen."""
        yield from super().get_system_commands(screen)
        for name in self.theme_set.names:
            yield SystemCommand(
                f"Theme: {name}", f"Switch to the {name} theme", _setter(self, name)
            )
        extra = getattr(screen, "palette_commands", None)
        if callable(extra):
            yield from extra()
        seen: set[str] = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.description or not active.enabled or binding.action in seen:
                continue
            seen.add(binding.action)
            yield SystemCommand(
                binding.description,
                f"{screen.__class__.__name__.removesuffix('Screen')} · key: "
                f"{self.get_key_display(binding)}",
                _runner(screen, binding.action, active.node),
            )

    # Quitting -------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Quit; a run in progress is cancelled first and left resumable (interrupted), a
        training run stops after its current step with a checkpoint."""
        from persona_tui.ui.screens.annotate import AnnotateScreen
        from persona_tui.ui.screens.run import RunScreen
        from persona_tui.ui.screens.train import TrainScreen

        for screen in reversed(self.screen_stack):
            if isinstance(screen, RunScreen | TrainScreen):
                await screen.shutdown()
            elif isinstance(screen, AnnotateScreen):
                screen.release()
        self.exit(0)


def _setter(app: App[int], name: str) -> Callable[[], None]:
    def set_theme() -> None:
        app.theme = name

    return set_theme


def _runner(screen: Screen[object], action: str, node: object) -> Callable[[], object]:
    async def run() -> None:
        await screen.run_action(action, node)  # type: ignore[arg-type]

    return run


def create_app(
    *,
    scenario: str | None = None,
    model: str | None = None,
    annotate: Path | None = None,
    blind: bool = False,
    backend: str = AUTO,
    config: Config | None = None,
    loader: ModelLoader | None = None,
    clock: Callable[[], float] | None = None,
    theme_folders: Iterable[Path] | None = None,
    persist_theme: bool = True,
) -> PersonaApp:
    """Build the app. The CLI passes the start options; tests also inject config and clock.

    An invalid user config does not stop the app: it opens with defaults and says why.
    """
    problem = ""
    if config is None:
        try:
            config = load_config()
        except PersonaError as error:
            config, problem = Config(), f"{error} (using defaults)"
    return PersonaApp(
        config=config,
        themes=load_themes(theme_folders),
        start=StartSpec(
            scenario=scenario, model=model, annotate=annotate, blind=blind, backend=backend
        ),
        loader=loader,
        clock=clock or time.monotonic,
        persist_theme=persist_theme,
        config_problem=problem,
    )


def run_app(
    *,
    scenario: str | None = None,
    model: str | None = None,
    annotate: Path | None = None,
    blind: bool = False,
    backend: str = AUTO,
) -> int:
    """Run the app in the terminal; returns the process exit status."""
    app = create_app(
        scenario=scenario, model=model, annotate=annotate, blind=blind, backend=backend
    )
    result = app.run()
    return result if isinstance(result, int) else 0
