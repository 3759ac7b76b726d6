"""Columns side by side: shared width when they fit, scrolling when they do not."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult
from textual.widgets import Static

from persona_tui.ui.widgets.side_by_side import MIN_COLUMN_WIDTH, SideBySide, column_width


def test_column_width() -> None:
    assert column_width(80, 2) == 40
    assert column_width(80, 3) == 40  # two in view, the third scrolls
    assert column_width(120, 3) == 40
    assert column_width(200, 3) == 66
    assert column_width(30, 2) == 30  # narrower than one column: one in view


class Columns(App[None]):
    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count

    def compose(self) -> ComposeResult:
        yield SideBySide(*(Static(f"condition {i}") for i in range(self.count)))


def widths(count: int, size: tuple[int, int]) -> list[int]:
    async def run() -> list[int]:
        app = Columns(count)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            row = app.query_one(SideBySide)
            await pilot.pause()
            return [child.region.width for child in row.children]

    return asyncio.run(run())


def test_three_conditions_at_80_columns_show_two_and_scroll() -> None:
    got = widths(3, (80, 24))
    assert all(width >= MIN_COLUMN_WIDTH for width in got)
    assert got[:2] == [40, 40]  # the third is off to the right, reached by scrolling


def test_columns_share_a_wide_terminal() -> None:
    assert widths(3, (160, 40)) == [53, 53, 53]
