"""A horizontal row of equal columns that scrolls when they do not all fit.

Textual gives every `1fr` child of a scrolling row the whole viewport once the children's
minimum widths overflow it, so this row sets its children's widths itself: all columns share
the width when they fit at `MIN_COLUMN_WIDTH`, otherwise as many as fit are shown at once and
the rest scroll into view.
"""

from __future__ import annotations

from textual.containers import HorizontalScroll
from textual.events import Resize

MIN_COLUMN_WIDTH = 38


def column_width(available: int, count: int, minimum: int = MIN_COLUMN_WIDTH) -> int:
    """Width of each of `count` columns in `available` cells."""
    if count <= 0:
        return available
    in_view = max(1, min(count, available // minimum))
    return available // in_view


class SideBySide(HorizontalScroll):
    """Columns side by side; call `fit()` after mounting or removing columns."""

    def fit(self) -> None:
        columns = list(self.children)
        width = column_width(self.scrollable_content_region.width or self.size.width, len(columns))
        for column in columns:
            column.styles.width = width

    def on_resize(self, event: Resize) -> None:
        self.fit()
