"""Pick a model and the backend that runs it.

The list holds the bundled demo, config aliases and the models found in local caches
(GGUF files and MLX folders), each with its backend; "Open a file…" takes a GGUF file,
an MLX model folder or `openai:URL#MODEL`. `b` cycles the backend: "auto" decides from
what the model is, anything else forces that engine (as `--backend` does on `run`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.types import CSSPathType
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from persona_tui.backend_names import AUTO, BACKEND_CHOICES
from persona_tui.errors import ModelLoadError
from persona_tui.models.config import Config
from persona_tui.models.refs import ModelRef
from persona_tui.ui.screens.dialogs import Dialog, TextPrompt
from persona_tui.ui.text import inert

OPEN_FILE = "\x00open-file"
BACKENDS = BACKEND_CHOICES
OPEN_HINT = "A GGUF file, an MLX model folder, or openai:URL#MODEL"


@dataclass(frozen=True)
class ModelChoice:
    """What the picker returns: the model reference `resolve_model` takes, and a backend.

    `backend` is "auto" (decided from the model on load) or the engine to force.
    """

    ref: str
    backend: str = AUTO


def ref_text(ref: ModelRef) -> str:
    """The string `resolve_model` takes back: "demo", an alias, or a path."""
    if ref.source == "demo":
        return "demo"
    if ref.source == "config":
        return ref.name
    return str(ref.path)


def shown_backend(ref: ModelRef) -> str:
    """The backend to show for `ref`: its own, or for "auto" what detection says (cheap)."""
    if ref.backend != AUTO:
        return ref.backend
    from persona_tui.backends.detect import detect_backend

    try:
        return detect_backend(str(ref.path))
    except ModelLoadError:
        return AUTO


def next_backend(backend: str) -> str:
    """The backend after `backend` in the `b` cycle (auto → llama.cpp → mlx → openai)."""
    index = BACKENDS.index(backend) if backend in BACKENDS else -1
    return BACKENDS[(index + 1) % len(BACKENDS)]


class ModelPicker(Dialog[ModelChoice | None]):
    """Returns the chosen model and backend, or None when cancelled."""

    CSS_PATH: ClassVar[CSSPathType | None] = ["dialogs.tcss", "model_picker.tcss"]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("o", "open_file", "Open a file…"),
        Binding("b", "cycle_backend", "Backend"),
    ]

    def __init__(self, config: Config, backend: str = AUTO) -> None:
        super().__init__()
        self.config = config
        self.backend = backend if backend in BACKENDS else AUTO

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Choose a model", classes="dialog-title")
            yield Static(self._backend_line(), id="backend")
            yield OptionList(Option("looking for models…", disabled=True), id="models")
            yield Static(
                "enter: choose · o: open a GGUF file, MLX folder or openai:URL#MODEL · "
                "b: backend · escape: cancel",
                classes="hint",
            )
        yield Footer(compact=True)

    def _backend_line(self) -> Text:
        text = Text("backend ")
        for name in BACKENDS:
            text.append(f" {name} ", style="reverse bold" if name == self.backend else "dim")
        note = "by what the model is" if self.backend == AUTO else "forced, whatever the model"
        text.append(f"  {note}", style="dim")
        return text

    def on_mount(self) -> None:
        self._discover()

    @work(thread=True, exclusive=True, exit_on_error=False, group="discover")
    def _discover(self) -> None:
        from persona_tui.models.discovery import discover_models

        try:
            refs = discover_models(self.config.models)
            rows = [(ref, shown_backend(ref)) for ref in refs]  # reads files: off the UI thread
        except Exception as error:  # a bug must not leave the dialog "looking" forever
            self.app.call_from_thread(self._show, [], f"could not list models: {error}")
        else:
            self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[tuple[ModelRef, str]], problem: str = "") -> None:
        options = self.query_one("#models", OptionList)
        options.clear_options()
        if problem:
            options.add_option(Option(inert(problem, "red"), disabled=True))
        width = max((len(ref.name) for ref, _ in rows), default=0)
        for ref, backend in rows:
            prompt = inert(f"{ref.name:{min(width, 40)}}  ")
            prompt.append_text(inert(f"{backend:9}  ", "bold"))
            prompt.append_text(inert(f"{ref.source}  {ref.path}", "dim"))
            options.add_option(Option(prompt, id=ref_text(ref)))
        options.add_option(Option("Open a file…", id=OPEN_FILE))
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == OPEN_FILE:
            self.action_open_file()
        elif event.option.id is not None:
            self.dismiss(ModelChoice(event.option.id, self.backend))

    def action_cycle_backend(self) -> None:
        self.backend = next_backend(self.backend)
        self.query_one("#backend", Static).update(self._backend_line())

    def action_open_file(self, value: str = "") -> None:
        def chosen(typed: str | None) -> None:
            location = (typed or "").strip()
            if not location:
                return
            problem = self._check_location(location)
            if problem:
                self.notify(problem, title="Not a model", severity="error", timeout=10)
                self.action_open_file(location)  # let the user correct it
            else:
                self.dismiss(ModelChoice(location, self.backend))

        prompt = TextPrompt(OPEN_HINT, value=value, placeholder="~/models/model.gguf")
        self.app.push_screen(prompt, chosen)

    def _check_location(self, location: str) -> str:
        """Why `location` cannot be a model ("" when it can): aliases, demo, or detection."""
        if location == "demo" or location in self.config.models:
            return ""
        from persona_tui.backends.detect import detect_backend

        try:
            detect_backend(location)
        except ModelLoadError as error:
            return str(error)
        return ""

    def action_cancel(self) -> None:
        self.dismiss(None)
