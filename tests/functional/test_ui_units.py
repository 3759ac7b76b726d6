"""Display safety, token batching and command palette coverage."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.geometry import Region

from persona_tui.models.config import Config
from persona_tui.run.events import RunFinished, TextChunk
from persona_tui.run.plan import TrialSpec
from persona_tui.session.store import load_session
from persona_tui.ui.run_bridge import RunBridge, RunEventMessage, TextBatch
from persona_tui.ui.sanitize import sanitize_for_display
from persona_tui.ui.screens.run import RunScreen
from persona_tui.ui.widgets.condition_column import ConditionColumn
from tests.functional.conftest import sessions_in, wait_for
from tests.functional.fake_backend import ScriptedBackend


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("[bold]loud[/bold]", "[bold]loud[/bold]"),  # markup is not interpreted (Text, not markup)
        ("[link=https://evil.example]x[/link]", "[link=https://evil.example]x[/link]"),
        ("\x1b[31mred\x1b[0m", "red"),  # CSI colour codes removed
        ("\x1b]8;;https://evil.example\x07click\x1b]8;;\x07", "click"),  # OSC 8 hyperlink
        ("\x1b]0;new title\x1b\\after", "after"),  # OSC ended by ST
        ("bell\x07", "bell\u2407"),  # BEL made visible
        ("over\rwrite", "over\u240dwrite"),  # lone CR made visible
        ("line\r\nnext", "line\nnext"),
        ("tab\tkept\nnewline kept", "tab\tkept\nnewline kept"),
        ("\x9b31mC1 CSI", "C1 CSI"),
        ("\u202eevil", "\ufffdevil"),  # bidi override made visible
        ("dangling \x1b", "dangling "),
    ],
)
def test_sanitize_for_display(raw: str, shown: str) -> None:
    assert sanitize_for_display(raw) == shown


def test_sanitized_text_has_no_terminal_controls() -> None:
    nasty = "".join(chr(c) for c in range(0, 0xA0)) + "\x1b[2J\x1b]52;c;ZXZpbA==\x07"
    clean = sanitize_for_display(nasty)
    assert not any(ord(ch) < 0x20 and ch not in "\n\t" for ch in clean)
    assert not any(0x7F <= ord(ch) < 0xA0 for ch in clean)


SPEC = TrialSpec("c", "p", 0, 1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bridge_batches_text_at_most_every_interval() -> None:
    posted: list[object] = []
    clock = FakeClock()
    bridge = RunBridge(posted.append, interval=0.05, clock=clock)
    for i in range(1000):  # 1000 tokens in one simulated second
        clock.now = i / 1000
        bridge(TextChunk(SPEC, f"t{i} ", 0))
    bridge(RunFinished("complete", 1, 1, 0))
    batches = [m for m in posted if isinstance(m, TextBatch)]
    assert 15 <= len(batches) <= 21  # ~20 updates for one second of text
    assert "".join(p.text for b in batches for p in b.parts) == "".join(
        f"t{i} " for i in range(1000)
    )
    assert isinstance(posted[-1], RunEventMessage)  # pending text flushed before the event


def test_bridge_posts_slow_tokens_at_once_and_splits_turns() -> None:
    posted: list[object] = []
    clock = FakeClock()
    bridge = RunBridge(posted.append, interval=0.05, clock=clock)
    bridge(TextChunk(SPEC, "a", 0))
    clock.now = 1.0
    bridge(TextChunk(SPEC, "b", 0))
    bridge(TextChunk(SPEC, "c", 1))  # a new turn flushes what belongs to the previous one
    bridge.flush()
    assert [(p.turn, p.text) for m in posted if isinstance(m, TextBatch) for p in m.parts] == [
        (0, "a"),
        (0, "b"),
        (1, "c"),
    ]


HOSTILE = [
    "[bold]not bold[/bold] ",
    "[link=https://evil.example]x[/link] ",
    "\x1b[31mred\x1b[0m",
    " \x1b]8;;https://evil.example\x07osc\x1b]8;;\x07",
    " bell\x07 cr\r",
]


def test_model_output_is_inert_on_screen(make_app: Any, ui_home: Path) -> None:
    """UI-only: a scripted backend emits markup and escapes; the screen shows them as text."""

    def loader(ref: str, config: Config, backend: str) -> ScriptedBackend:
        return ScriptedBackend(HOSTILE)

    async def scenario() -> None:
        app = make_app(scenario="small", loader=loader)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
            screen = app.screen
            assert isinstance(screen, RunScreen)
            await wait_for(pilot, lambda: screen.finished_status == "complete")
            await pilot.pause()
            column = screen.query(ConditionColumn).first()
            (pane,) = column.panes
            assert pane.text == sanitize_for_display("".join(HOSTILE))
            assert "[bold]not bold[/bold]" in pane.text
            region = Region(0, 0, pane.size.width, pane.size.height)
            strips = pane.render_lines(region)
            assert "[bold]not bold[/bold]" in strips[0].text
            for strip in strips:
                for segment in strip:
                    assert "\x1b" not in segment.text and "\x07" not in segment.text
                    assert segment.style is None or segment.style.link is None
                    assert segment.style is None or not segment.style.bold
        stored = load_session(sessions_in(ui_home)[0]).trials[0].response
        assert stored == "".join(HOSTILE)  # stored exactly, sanitized only for display

    asyncio.run(scenario())


def test_palette_offers_every_footer_action_and_themes(make_app: Any) -> None:
    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            titles = {c.title for c in app.get_system_commands(app.screen)}
            for binding in app.screen.active_bindings.values():
                if binding.binding.description and binding.binding.show:
                    assert binding.binding.description in titles
            assert {
                "Theme: persona-dark",
                "Theme: persona-light",
                "Theme: persona-high-contrast",
            } <= titles

    asyncio.run(scenario())


def test_app_is_a_textual_app() -> None:
    from persona_tui.ui.app import create_app

    assert isinstance(create_app(config=Config()), App)
