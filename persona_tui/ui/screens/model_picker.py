"""Pick a model: the bundled demo, config aliases, models in local caches, or a file."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from persona_tui.config import Config
from persona_tui.models import ModelRef
from persona_tui.ui.screens.dialogs import DIALOG_CSS, TextPrompt
from persona_tui.ui.text import inert

OPEN_FILE = "\x00open-file"


def ref_text(ref: ModelRef) -> str:
    """The string `resolve_model` takes back: "demo", an alias, or a path."""
    if ref.source == "demo":
        return "demo"
    if ref.source == "config":
        return ref.name
    return str(ref.path)


class ModelPicker(ModalScreen[str | None]):
    """Returns a model reference string, or None when cancelled."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="ModelPicker")
        + """
    ModelPicker > Vertical { width: 100; }
    ModelPicker OptionList { height: auto; max-height: 16; }
    """
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("o", "open_file", "Open a file…"),
    ]

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Choose a model", classes="dialog-title")
            yield OptionList(Option("looking for models…", disabled=True), id="models")
            yield Static("enter: choose · o: open a GGUF file · escape: cancel", classes="hint")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._discover()

    @work(thread=True, exclusive=True, exit_on_error=False, group="discover")
    def _discover(self) -> None:
        from persona_tui.models import discover_models

        refs = discover_models(self.config.models)
        self.app.call_from_thread(self._show, refs)

    def _show(self, refs: list[ModelRef]) -> None:
        options = self.query_one("#models", OptionList)
        options.clear_options()
        for ref in refs:
            prompt = inert(f"{ref.name}  ")
            prompt.append(f"{ref.source} · {ref.path}", style="dim")
            options.add_option(Option(prompt, id=ref_text(ref)))
        options.add_option(Option("Open a file…", id=OPEN_FILE))
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == OPEN_FILE:
            self.action_open_file()
        elif event.option.id is not None:
            self.dismiss(event.option.id)

    def action_open_file(self) -> None:
        def chosen(path: str | None) -> None:
            if path and path.strip():
                self.dismiss(path.strip())

        prompt = TextPrompt("Path of a GGUF model file", placeholder="~/models/model.gguf")
        self.app.push_screen(prompt, chosen)

    def action_cancel(self) -> None:
        self.dismiss(None)
