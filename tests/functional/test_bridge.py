"""CoalescingBridge: the mechanism under the run, training and option-pass bridges.

Kinds held back per their fold, others forwarded after what is held, the order across kinds
kept, `Latest` keeping only the newest event; and every screen's `.tcss` beside it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from pathlib import Path, PurePath

import pytest
from textual.message import Message
from textual.screen import Screen

import persona_tui.ui.screens
from persona_tui.ui.bridge import CoalescingBridge, Latest


@dataclass(frozen=True)
class Tick:
    n: int
    last: bool = False


@dataclass(frozen=True)
class Tock:
    n: int


@dataclass(frozen=True)
class Other:
    name: str


@dataclass
class Posted(Message):
    what: object


def latest(kind: type[object], interval: float = 0.05) -> Latest[object]:
    return Latest(kind, interval, Posted, final=lambda e: bool(getattr(e, "last", False)))


def test_latest_posts_the_newest_at_most_every_interval_and_the_final_at_once() -> None:
    posted: list[Message] = []
    now = [0.0]
    bridge = CoalescingBridge[Tick](posted.append, (latest(Tick),), clock=lambda: now[0])
    bridge(Tick(1))  # nothing posted before: at once
    bridge(Tick(2))
    bridge(Tick(3))  # both held; 3 supersedes 2
    now[0] = 0.06
    bridge(Tick(4))  # the interval has passed: the newest goes
    bridge(Tick(5, last=True))  # final: at once, whatever the interval
    bridge(Tick(6))  # held, and never posted unless flushed
    assert [m.what for m in posted if isinstance(m, Posted)] == [
        Tick(1),
        Tick(4),
        Tick(5, last=True),
    ]
    bridge.flush()
    assert isinstance(posted[-1], Posted) and posted[-1].what == Tick(6)


def test_other_events_follow_what_is_held_and_kinds_keep_their_order() -> None:
    posted: list[Message] = []
    now = [0.0]
    bridge = CoalescingBridge[Tick | Tock | Other](
        posted.append, (latest(Tick), latest(Tock)), Posted, clock=lambda: now[0]
    )
    bridge(Tick(1))  # posted at once
    bridge(Tick(2))  # held
    bridge(Tock(1))  # another kind: Tick(2) goes first; Tock(1) at once (its first)
    bridge(Tock(2))  # held
    bridge(Other("x"))  # forwarded, after the held Tock(2)
    assert [m.what for m in posted if isinstance(m, Posted)] == [
        Tick(1),
        Tick(2),
        Tock(1),
        Tock(2),
        Other("x"),
    ]


def test_an_event_without_a_fold_needs_a_forward() -> None:
    bridge = CoalescingBridge[object](lambda message: None, (latest(Tick),))
    with pytest.raises(TypeError, match="no fold for a Other event"):
        bridge(Other("x"))


def test_every_screen_has_its_tcss() -> None:
    """docs/architecture.md: a screen's styles are in `.tcss` files beside it (`CSS_PATH`),
    not in its module (`DEFAULT_CSS`/`CSS` are for small reusable widgets)."""
    folder = Path(persona_tui.ui.screens.__path__[0])
    screens: list[type[Screen[object]]] = []
    for module_info in pkgutil.iter_modules([str(folder)]):
        module = importlib.import_module(f"persona_tui.ui.screens.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if not (issubclass(cls, Screen) and cls.__module__ == module.__name__):
                continue
            screens.append(cls)
            assert "DEFAULT_CSS" not in vars(cls) and "CSS" not in vars(cls), cls.__name__
            css_path = cls.CSS_PATH
            assert css_path, cls.__name__
            paths = [css_path] if isinstance(css_path, (str, PurePath)) else css_path
            assert all((folder / path).is_file() for path in paths), (cls.__name__, paths)
    assert len({cls.__module__ for cls in screens}) == 10  # every module of screens/
