"""The time left of a pass (`ui.eta.PassEta`) and the option pass's line that shows it."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult
from textual.widgets import Static

from persona_tui.run.events import OptionsFinished, OptionsProgress, OptionsStarted, OptionsSummary
from persona_tui.session.model import OptionCell
from persona_tui.ui.eta import PassEta
from persona_tui.ui.options_pass import OptionsPassPanel
from tests.functional.conftest import TickClock


def test_no_estimate_before_the_first_items() -> None:
    eta = PassEta()
    assert eta.remaining(0.0) is None  # not started
    eta.start(100.0, done=0, total=10)
    assert eta.remaining(150.0) is None
    eta.finished(130.0, 1)  # one slow first item (a cold prompt) gives no estimate
    assert eta.remaining(130.0) is None
    eta.finished(140.0, 2)
    assert eta.remaining(140.0) == 20.0 * 8  # 40 s for 2 items, 8 left


def test_estimate_counts_down_but_waits_for_a_late_item() -> None:
    eta = PassEta()
    eta.start(0.0, done=0, total=5)
    eta.finished(20.0, 2)  # 10 s an item, 3 left
    assert eta.remaining(20.0) == 30.0
    assert eta.remaining(25.0) == 25.0  # counts down with the clock
    assert eta.remaining(40.0) == 20.0  # the next item is late: held at the two after it
    eta.finished(40.0, 3)  # 40 s for 3 items
    assert round(eta.remaining(40.0) or 0, 6) == round(40 / 3 * 2, 6)
    eta.finished(50.0, 5)
    assert eta.remaining(50.0) == 0.0
    eta.stop(50.0)
    assert eta.remaining(60.0) is None  # stopped: no estimate


def test_items_done_before_the_pass_neither_count_nor_wait() -> None:
    eta = PassEta()
    eta.start(0.0, done=6, total=10)  # resumed with 6 done
    eta.finished(5.0, 7)
    eta.finished(10.0, 8)
    assert eta.remaining(10.0) == 10.0  # 5 s an item over this pass's 2, 2 left


def test_a_batch_is_waited_for() -> None:
    """With batched decoding the first trials end together: wait for a whole batch."""
    eta = PassEta()
    eta.start(0.0, done=0, total=64, min_done=8)
    eta.finished(30.0, 2)  # two of the first batch of 8, ending together
    assert eta.remaining(30.0) is None
    eta.finished(31.0, 8)
    assert eta.remaining(31.0) is not None
    short = PassEta()
    short.start(0.0, done=62, total=64, min_done=8)  # fewer left than a batch
    short.finished(5.0, 64)
    assert short.remaining(5.0) == 0.0


def cell(condition: str, probe: str) -> OptionCell:
    return OptionCell(condition, probe, prompt="p", prompt_tokens=3, seconds=1.0)


class PanelHost(App[None]):
    def __init__(self, clock: TickClock) -> None:
        super().__init__()
        self.clock = clock

    def compose(self) -> ComposeResult:
        yield OptionsPassPanel(clock=self.clock)


def test_the_panel_shows_the_time_left_once_cells_are_done() -> None:
    clock = TickClock()

    async def run() -> None:
        app = PanelHost(clock)
        async with app.run_test(size=(100, 6)) as pilot:
            panel = app.query_one(OptionsPassPanel)

            def line() -> str:
                return str(panel.query_one(".options-pass-status", Static).render())

            panel.show(OptionsStarted(done=0, total=10))
            assert line() == "Scoring answer options: 0/10 cells · --:-- left"
            clock.now += 12
            panel.show(OptionsProgress(cell("baseline", "[bold]wish"), 1, 10))
            first = "Scoring answer options: 1/10 cells · --:-- left · baseline × [bold]wish"
            assert line() == first  # no estimate from one cell; the probe's id shown as is
            clock.now += 8
            panel.show(OptionsProgress(cell("framed", "wish"), 2, 10))
            assert "2/10 cells · 01:20 left · framed × wish" in line()  # 10 s a cell, 8 left
            clock.now += 3
            panel.refresh_figures()  # the screen's one-second tick
            assert "01:17 left" in line()
            panel.show(OptionsFinished(OptionsSummary(10, 10, 10, False)))
            await pilot.pause()
            assert line() == "Answer options scored: 10/10 cells · v: results"
            panel.refresh_figures()  # the tick no longer changes a finished pass's line
            assert line() == "Answer options scored: 10/10 cells · v: results"

    asyncio.run(run())
