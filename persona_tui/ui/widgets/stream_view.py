"""A scrolling view of streamed, inert text whose cost per append does not grow with the text.

Textual's `Static.update` re-renders and re-wraps the whole text and its height change lays
out the screen; `Log` appends cheaply but does not wrap, and `RichLog` cannot continue a
line. `StreamView` keeps the text as wrapped rows (`wrap_rows`): an append re-wraps only the
last row plus the new text, repaints only the rows that changed (`refresh_lines`), and grows
the scrollable height without a screen layout. Its vertical scrollbar is always shown
(`overflow-y: scroll`; the gutter is kept anyway), so a new trial's `clear()` or a text
outgrowing the view never makes it appear or go, which would lay out the screen. A new
width re-wraps everything once. Rows are drawn with the Line API.

Following the end scrolls the view, and a scroll repaints every row in view (and the
compositor the layers beneath it): at most once per `follow_interval` (0.25 s), so a fast
stream moves its text up a few rows at a time instead of paying a whole repaint per batch.

Text is sanitized as it arrives (`StreamSanitizer`), never parsed as markup.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.events import Resize
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.selection import Selection
from textual.strip import Strip
from textual.timer import Timer

from persona_tui.ui.sanitize import StreamSanitizer, sanitize_for_display
from persona_tui.ui.text import wrap_rows


def _offset(x: int, y: int) -> Style:
    """Where a segment starts in the text, for mouse selection (as `Strip.apply_offsets`)."""
    return Style.from_meta({"offset": (x, y)})


TAB = "    "  # tabs are shown as four spaces: the same wherever a row happens to start


@dataclass
class StreamWork:
    """What the view has done so far, counted (for tests and the bench, not for display)."""

    appends: int = 0
    wrapped_chars: int = 0  # characters passed to `wrap_rows`
    rows_refreshed: int = 0  # rows marked for repaint by appends (scrolling repaints the view)
    rows_rendered: int = 0  # rows drawn (`render_line` calls on a row of text)
    full_wraps: int = 0  # whole-text re-wraps (a width change, `set_text`)
    layouts: int = 0  # screen layouts asked for (the scrollbar appeared or went)
    follows: int = 0  # scrolls to follow the end (each repaints the rows in view)


class StreamView(ScrollView, can_focus=True):
    """Streamed text, wrapped to the view's width, following the end unless scrolled up."""

    DEFAULT_CSS = """
    StreamView {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: scroll;
        scrollbar-gutter: stable;
        scrollbar-size-vertical: 1;
        background: transparent;
    }
    """

    def __init__(
        self, *, follow_interval: float = 0.25, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.follow_interval = follow_interval
        self._follow_due: Timer | None = None  # a scroll to the end, waiting for its time
        self._follow_from = 0.0  # where the view was when that scroll was scheduled
        self._followed_at = float("-inf")  # when the view last scrolled to the end
        self._scrollbar_stale = False  # rows were added since the scrollbar was sized
        self._scrollbar_due: Timer | None = None
        self._chunks: list[str] = []  # the display text (sanitized), as it arrived
        self._sanitizer = StreamSanitizer()
        self._rows: list[str] = [""]  # wrapped rows; the last one is still open
        self._wrap_width = 0  # 0: not laid out yet (rows are made on the first resize)
        self.work = StreamWork()
        self._line_style = Style()
        self._line_selection: Selection | None = None
        self._line_width = 0

    @property
    def text(self) -> str:
        """The text shown (sanitized for display)."""
        return "".join(self._chunks)

    @property
    def rows(self) -> list[str]:
        """The wrapped rows (trailing whitespace included; it is cropped on display)."""
        return self._rows

    def clear(self) -> None:
        """Show nothing (a new trial or turn begins)."""
        self._chunks.clear()
        self._sanitizer = StreamSanitizer()
        self._rows = [""]
        self._cancel_follow()
        self._set_height(1)
        self.scroll_to(y=0, animate=False, immediate=True)
        self.refresh()

    def append(self, text: str) -> None:
        """Add streamed model output (raw: it is sanitized here) at the end."""
        self._add(self._sanitizer.feed(text))

    def end(self) -> None:
        """The stream ended: show what the sanitizer still held back."""
        self._add(self._sanitizer.flush())

    def set_text(self, text: str) -> None:
        """Show `text` (raw model output) instead, unless it is what is already shown."""
        shown = sanitize_for_display(text)
        if shown == self.text and not self._sanitizer.flush():
            return
        self._chunks = [shown] if shown else []
        self._sanitizer = StreamSanitizer()
        self._rewrap()

    def _add(self, piece: str) -> None:
        if not piece:
            return
        self._chunks.append(piece)
        self.work.appends += 1
        if self._wrap_width <= 0:
            return
        follow = self.following
        first = len(self._rows) - 1
        self._rows[first:] = self._wrap(self._rows[first], piece)
        changed = len(self._rows) - first
        self.work.rows_refreshed += changed
        self._set_height(len(self._rows))
        if follow:
            self._follow()
        elif self.follow_interval <= 0:  # the reader scrolled up: the thumb still shrinks
            self._sync_scrollbar()
        elif self._scrollbar_due is None:
            self._scrollbar_due = self.set_timer(self.follow_interval, self._scrollbar_when_due)
        self.refresh_lines(first, changed)

    def _wrap(self, open_row: str, piece: str) -> list[str]:
        """Rows of the open row continued by `piece` (which may start new paragraphs)."""
        width = self._wrap_width
        paragraphs = piece.replace("\t", TAB).split("\n")
        rows = wrap_rows(open_row + paragraphs[0], width)
        for paragraph in paragraphs[1:]:
            rows.extend(wrap_rows(paragraph, width))
        self.work.wrapped_chars += len(open_row) + len(piece)
        return rows

    def _rewrap(self) -> None:
        if self._wrap_width <= 0:
            return
        follow = self.following
        self.work.full_wraps += 1
        self._rows = self._wrap("", self.text)
        self._set_height(len(self._rows))
        if follow:
            self._cancel_follow()
            self._scroll_to_end()
        self.refresh()

    @property
    def following(self) -> bool:
        """Whether the view keeps the end in sight (it does unless the reader scrolled up)."""
        return self._follow_due is not None or self.is_vertical_scroll_end

    def _follow(self) -> None:
        """Scroll to the end now, or when `follow_interval` has passed since the last time."""
        if self._follow_due is not None or self.scroll_y >= self.max_scroll_y:
            return
        wait = self._followed_at + self.follow_interval - time.monotonic()
        if wait <= 0:
            self._scroll_to_end()
            return
        self._follow_from = self.scroll_y
        self._follow_due = self.set_timer(wait, self._follow_when_due)

    def _follow_when_due(self) -> None:
        self._follow_due = None
        if self.scroll_y == self._follow_from:  # the reader has not scrolled meanwhile
            self._scroll_to_end()

    def _scroll_to_end(self) -> None:
        self._followed_at = time.monotonic()
        self.work.follows += 1
        self._sync_scrollbar()
        self.scroll_to(y=self.max_scroll_y, animate=False, force=True)

    def _sync_scrollbar(self) -> None:
        """Size the scrollbar's thumb to the rows there are now."""
        if not self._scrollbar_stale:
            return
        self._scrollbar_stale = False
        if self.show_vertical_scrollbar:
            scrollbar = self.vertical_scrollbar
            scrollbar.window_virtual_size = self.virtual_size.height
            scrollbar.window_size = self.scrollable_content_region.height

    def _scrollbar_when_due(self) -> None:
        self._scrollbar_due = None
        self._sync_scrollbar()

    def _cancel_follow(self) -> None:
        if self._follow_due is not None:
            self._follow_due.stop()
            self._follow_due = None

    def _set_height(self, rows: int) -> None:
        """Grow or shrink the scrollable height, laying out only if the scrollbar changes."""
        size = Size(self._wrap_width, rows)
        if size == self.virtual_size:
            return
        viewport = self.scrollable_content_region.height
        toggles = (self.virtual_size.height > viewport) != (rows > viewport)
        if toggles and self.styles.overflow_y == "auto":  # a scrollbar shown only when needed
            self.work.layouts += 1
            self.virtual_size = size  # the scrollbar appears or goes: one layout
            return
        self.set_reactive(StreamView.virtual_size, size)
        # The scrollbar's thumb follows when the view scrolls (or at `_sync_scrollbar`): a
        # scrollbar repaint per row would cost as much as repainting the rows in view.
        self._scrollbar_stale = True

    def on_resize(self, event: Resize) -> None:
        width = self.scrollable_content_region.width
        if width != self._wrap_width:
            self._wrap_width = width
            self._rewrap()

    def render_lines(self, crop: Region) -> list[Strip]:
        # Looked up once per repaint, not once per row.
        self._line_style = self.rich_style
        self._line_selection = self.text_selection
        self._line_width = self.scrollable_content_region.width
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width, style = self._line_width, self._line_style
        if index >= len(self._rows):
            return Strip.blank(width, style)
        self.work.rows_rendered += 1
        row = set_cell_size(self._rows[index], width)  # cropped or padded to the width
        selection = self._line_selection
        span = selection.get_span(index) if selection is not None else None
        if span is None:
            return Strip([Segment(row, style + _offset(0, index))], width)
        start, end = span
        end = len(row) if end == -1 else min(end, len(row))
        selected = style + self.screen.get_component_rich_style("screen--selection")
        segments = [
            Segment(row[:start], style + _offset(0, index)),
            Segment(row[start:end], selected + _offset(start, index)),
            Segment(row[end:], style + _offset(end, index)),
        ]
        return Strip([segment for segment in segments if segment.text], width)

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        return selection.extract("\n".join(self._rows)), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        self.refresh()
