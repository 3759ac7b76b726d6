"""Small modal dialogs: confirm, ask for a line of text, show a record."""

from __future__ import annotations

from typing import ClassVar, TypeVar

from rich.console import RenderableType
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.types import CSSPathType
from textual.widgets import Footer, Input, Static

from persona_tui.ui.text import inert

ResultT = TypeVar("ResultT")


class Dialog(ModalScreen[ResultT]):
    """A modal dialog: a framed box in the middle of the screen (`dialogs.tcss`).

    A dialog with styles of its own lists its `.tcss` after `dialogs.tcss` in `CSS_PATH`
    (so its rules win over the shared ones of equal specificity).
    """

    CSS_PATH: ClassVar[CSSPathType | None] = "dialogs.tcss"


class ConfirmDialog(Dialog[bool]):
    """Ask a yes/no question; `y` confirms, `n` or escape declines."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self._title = title
        self._message = message

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(inert(self._title), classes="dialog-title")
            yield Static(inert(self._message), classes="dialog-body")
            yield Static("y: yes · n: no", classes="hint")
        yield Footer(compact=True)

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class TextPrompt(Dialog[str | None]):
    """Ask for one line of text; enter accepts, escape cancels (returns None)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self._title = title
        self._value = value
        self._placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(inert(self._title), classes="dialog-title")
            yield Input(self._value, placeholder=self._placeholder, id="prompt-input")
            yield Static("enter: save · escape: cancel", classes="hint")
        yield Footer(compact=True)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class InfoDialog(Dialog[None]):
    """Show a read-only record (e.g. a session's reproducibility record); any close key
    (wider than the other dialogs: `dialogs.tcss`)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, title: str, body: RenderableType) -> None:
        super().__init__()
        self._title = title
        self._body = body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(inert(self._title), classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(self._body)
        yield Footer(compact=True)

    def action_close(self) -> None:
        self.dismiss(None)
