"""Choose where each training condition's adapter comes from (a dialog opened from Home).

One path input per training condition, prefilled with the folder already chosen or with
`persona-tui train`'s default folder for the scenario and model. `enter` checks every
path in a worker (hashing a large adapter takes time) with the same checks and sentences as
`persona-tui run --adapters`, shows each problem under its input, and closes with the
chosen folders only when all are usable (a default folder may still be untrained).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.types import CSSPathType
from textual.widgets import Footer, Input, Static

from persona_tui.errors import PersonaError
from persona_tui.scenario.model import Scenario
from persona_tui.training.adapter_choice import (
    AdapterChoice,
    adapter_choices,
    default_adapter_folders,
    model_sha256,
)
from persona_tui.training.locate import training_model_path
from persona_tui.ui.app_base import PersonaAppBase
from persona_tui.ui.screens.dialogs import Dialog
from persona_tui.ui.text import inert

AdapterPaths = dict[str, Path]


@dataclass
class _Defaults(Message):
    folders: Mapping[str, Path]


@dataclass
class _Checked(Message):
    choices: tuple[AdapterChoice, ...]
    accept: bool  # close the dialog if every chosen adapter is usable


@dataclass
class _Failed(Message):
    error: str


def choice_text(choice: AdapterChoice) -> Text:
    """A condition's adapter as Home and this dialog show it (inert: paths are user text)."""
    if choice.record is not None:
        return inert(choice.summary(), "green")
    return inert(choice.problem, "yellow" if choice.missing else "red")


class AdapterDialog(Dialog[AdapterPaths | None]):
    """A path per training condition; enter checks and uses them, escape cancels."""

    app = getters.app(PersonaAppBase)
    CSS_PATH: ClassVar[CSSPathType | None] = ["dialogs.tcss", "adapters.tcss"]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+r", "use_default", "Default folder"),
    ]

    def __init__(self, scenario: Scenario, model: str, chosen: Mapping[str, Path]) -> None:
        super().__init__()
        self.scenario = scenario
        self.model = model
        self.chosen = dict(chosen)
        self.defaults: dict[str, Path] = {}
        self.choices: tuple[AdapterChoice, ...] = ()
        self.checking = False
        self.error = ""

    def compose(self) -> ComposeResult:
        with Vertical():
            title = inert(f"Adapters for {self.scenario.title or self.scenario.id}")
            yield Static(title, classes="dialog-title")
            yield Static(inert(f"on {self.model}"), id="adapter-model")
            with VerticalScroll(classes="dialog-body"):
                for condition in self.scenario.training_conditions:
                    label = inert(condition.id)
                    if condition.label and condition.label != condition.id:
                        label.append_text(inert(f" ({condition.label})", "dim"))
                    yield Static(label, classes="adapter-condition")
                    given = self.chosen.get(condition.id)
                    yield Input(
                        "" if given is None else str(given),
                        placeholder="a folder of persona-tui train, or its adapter.gguf",
                        id=f"adapter-{condition.id}",
                        compact=True,
                    )
                    yield Static("", id=f"adapter-state-{condition.id}", classes="adapter-state")
            yield Static(
                "enter: check and use · tab: next · ctrl+r: default folder · escape: cancel",
                classes="hint",
            )
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._check(self._values(), accept=False)

    # Paths --------------------------------------------------------------------------

    def _input(self, condition: str) -> Input:
        return self.query_one(f"#adapter-{condition}", Input)

    def _values(self) -> dict[str, str]:
        return {c.id: self._input(c.id).value.strip() for c in self.scenario.training_conditions}

    def chosen_paths(self, values: Mapping[str, str]) -> AdapterPaths:
        """The conditions whose path is not the default folder's (those the run names)."""
        paths: AdapterPaths = {}
        for condition, value in values.items():
            if not value:
                continue
            path = Path(value).expanduser()
            if path != self.defaults.get(condition):
                paths[condition] = path
        return paths

    @work(thread=True, exclusive=True, exit_on_error=False, group="adapter-check")
    def _check(self, values: Mapping[str, str], accept: bool) -> None:
        try:
            model_path = training_model_path(self.model, self.app.config)
            defaults = default_adapter_folders(self.scenario, model_path)
            self.post_message(_Defaults(defaults))
            chosen = {c: Path(v).expanduser() for c, v in values.items() if v}
            chosen = {c: p for c, p in chosen.items() if p != defaults.get(c)}
            choices = adapter_choices(self.scenario, model_path, model_sha256(model_path), chosen)
        except PersonaError as error:
            self.post_message(_Failed(str(error)))
            return
        self.post_message(_Checked(choices, accept))

    @on(_Defaults)
    def _defaults(self, message: _Defaults) -> None:
        self.defaults = dict(message.folders)
        for condition, folder in self.defaults.items():
            field = self._input(condition)
            if not field.value:
                field.value = str(folder)
        if self.defaults:
            folder = next(iter(self.defaults.values())).parent
            self.query_one("#adapter-model", Static).update(
                inert(f"on {self.model} · default: {folder}/<condition>")
            )

    @on(_Checked)
    def _checked(self, message: _Checked) -> None:
        self.checking = False
        self.choices = message.choices
        for choice in message.choices:
            self.query_one(f"#adapter-state-{choice.condition}", Static).update(choice_text(choice))
        usable = all(c.record is not None or (c.missing and not c.chosen) for c in self.choices)
        if message.accept and usable:
            self.dismiss(self.chosen_paths(self._values()))

    @on(_Failed)
    def _failed(self, message: _Failed) -> None:
        self.checking = False
        self.error = message.error
        self.query_one("#adapter-model", Static).update(inert(message.error, "red"))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.checking = True
        for condition in self.scenario.training_conditions:
            self.query_one(f"#adapter-state-{condition.id}", Static).update(
                Text("checking …", "italic")
            )
        self._check(self._values(), accept=True)

    def action_use_default(self) -> None:
        """Put the default folder back in the focused condition's input."""
        focused = self.focused
        if isinstance(focused, Input) and focused.id:
            condition = focused.id.removeprefix("adapter-")
            if condition in self.defaults:
                focused.value = str(self.defaults[condition])

    def action_cancel(self) -> None:
        self.dismiss(None)
