"""Streamed text on the Run screen: incremental wrapping, bounded work per append, several
streams per column (batched decoding), and text that stays inert."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget

from persona_tui.run.events import RunFinished, TextChunk
from persona_tui.run.plan import RunOptions, TrialSpec
from persona_tui.scenario.parse import load_scenario, parse_scenario
from persona_tui.session.store import load_session
from persona_tui.ui.run_bridge import RunBridge, TextBatch
from persona_tui.ui.sanitize import StreamSanitizer, sanitize_for_display
from persona_tui.ui.screens.run import RunRequest, RunScreen
from persona_tui.ui.text import wrap_rows
from persona_tui.ui.widgets.condition_column import ConditionColumn, ProbeLine
from persona_tui.ui.widgets.side_by_side import SideBySide
from persona_tui.ui.widgets.stream_view import StreamView
from tests.functional.conftest import sessions_in, wait_for
from tests.functional.fake_backend import BatchedRunner, BatchingScriptedBackend, ScriptedBackend
from tests.scenario_text import SMALL_SCENARIO

# Wrapping ------------------------------------------------------------------------------


def full_rows(text: str, width: int) -> list[str]:
    """The rows of a whole text wrapped at once (what a view must show after any appends)."""
    return [row for paragraph in text.split("\n") for row in wrap_rows(paragraph, width)]


def random_text(rng: random.Random, words: int) -> str:
    vocabulary = ["a", "bully", "play", "rehearsal", "日本語", "x" * 50, "[bold]b[/bold]", "  "]
    parts = []
    for _ in range(words):
        parts.append(rng.choice(vocabulary))
        parts.append(rng.choice([" ", " ", " ", "  ", "\n", "\n\n"]))
    return "".join(parts)


def test_wrap_rows_keep_every_character_within_the_width() -> None:
    assert wrap_rows("hello world this is a test", 10) == ["hello ", "world this ", "is a test"]
    assert wrap_rows("x" * 25 + " end", 10) == ["x" * 10, "x" * 10, "xxxxx end"]
    assert wrap_rows("", 10) == [""]
    assert wrap_rows("日本語のテキスト", 5) == ["日本", "語の", "テキ", "スト"]
    rng = random.Random(1)
    for width in (2, 7, 36, 80):
        for paragraph in random_text(rng, 200).split("\n"):
            rows = wrap_rows(paragraph, width)
            assert "".join(rows) == paragraph
            assert all(cell_len(row.rstrip()) <= width for row in rows)


def test_wrapping_from_a_row_start_gives_the_same_rows() -> None:
    """What lets a stream re-wrap only its last row: the rest of a text wraps the same alone."""
    rng = random.Random(2)
    for width in (5, 13, 36):
        for paragraph in random_text(rng, 120).split("\n"):
            rows = wrap_rows(paragraph, width)
            start = 0
            for index, row in enumerate(rows):
                assert wrap_rows(paragraph[start:], width) == rows[index:]
                start += len(row)


# Sanitizing a stream -----------------------------------------------------------------------

HOSTILE = (
    "[bold]loud[/bold] \x1b[31mred\x1b[0m plain\r\nnext \x1b]8;;https://evil.example\x07click"
    "\x1b]8;;\x07 \x1b]0;title\x1b\\after bell\x07 cr\r \x9b31mC1 \u202eevil\ttab \x1b"
)


def test_a_stream_in_any_pieces_shows_what_the_whole_text_shows() -> None:
    whole = sanitize_for_display(HOSTILE)
    for cut in range(len(HOSTILE) + 1):
        sanitizer = StreamSanitizer()
        shown = sanitizer.feed(HOSTILE[:cut]) + sanitizer.feed(HOSTILE[cut:]) + sanitizer.flush()
        assert shown == whole, cut
    sanitizer = StreamSanitizer()
    shown = "".join(sanitizer.feed(ch) for ch in HOSTILE) + sanitizer.flush()  # token by token
    assert shown == whole


def test_an_unterminated_escape_string_is_held_only_up_to_a_limit() -> None:
    sanitizer = StreamSanitizer(hold_limit=100)
    assert sanitizer.feed("before \x1b]0;") == "before "
    assert sanitizer.feed("y" * 50) == ""  # may still end: held
    assert sanitizer.feed("y" * 100) == ""  # let go, removed as an unterminated string
    assert sanitizer.feed(" visible") == " visible"


# The bridge with several streams --------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bridge_coalesces_interleaved_streams() -> None:
    """Eight trials decoded together: ~7 posts a second for all of them (a third of the rate
    of one stream: a repaint of eight costs several of one's), not one per token or trial."""
    posted: list[object] = []
    clock = FakeClock()
    bridge = RunBridge(posted.append, interval=0.05, clock=clock)
    specs = [TrialSpec("c", "p", sample, sample) for sample in range(8)]
    for step in range(125):  # 1000 tokens in one simulated second
        for spec in specs:
            clock.now = (step * 8 + spec.sample) / 1000
            bridge(TextChunk(spec, f"t{step} ", 0))
    bridge(RunFinished("complete", 8, 8, 0))
    batches = [m for m in posted if isinstance(m, TextBatch)]
    assert 5 <= len(batches) <= 8
    assert sum(len(b.parts) for b in batches) >= 5 * 8  # each post carries all eight streams
    for spec in specs:
        text = "".join(p.text for b in batches for p in b.parts if p.spec == spec)
        assert text == "".join(f"t{step} " for step in range(125))


# The view -------------------------------------------------------------------------------------


class ViewApp(App[None]):
    def compose(self) -> ComposeResult:
        yield StreamView()


def shown_rows(view: StreamView) -> list[str]:
    region = Region(0, 0, view.size.width, view.size.height)
    return [strip.text.rstrip() for strip in view.render_lines(region)]


async def follow_due(pilot: Pilot[Any], view: StreamView) -> None:
    """Let the view's pending follow run: its timer fires (at most `follow_interval` after
    the last one), then a refresh applies the scroll. A fixed pause was not always enough:
    on a fast machine the last rows came less than an interval after the previous follow,
    on a loaded one the timer or the refresh ran after the pause."""
    await wait_for(pilot, lambda: view.scroll_y == view.max_scroll_y)


def test_append_work_is_proportional_to_the_appended_text() -> None:
    """After a long text, an append re-wraps one row plus the new text and lays nothing out."""

    async def scenario() -> None:
        app = ViewApp()
        async with app.run_test(size=(40, 12)) as pilot:
            view = app.query_one(StreamView)
            # Follow at every append, in the step of the append that needs it. Paced (the
            # default), a follow's timer could fire in the pause after another append, and
            # its repaint of the view land in a second frame after that append's rows: one
            # row over `height`, depending on timing (the pacing has its own test below).
            view.follow_interval = 0
            await pilot.pause()
            width = view.scrollable_content_region.width
            height = view.scrollable_content_region.height
            rng = random.Random(3)
            text = random_text(rng, 3000)
            pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
            layouts: list[bool] = []
            refresh = view.refresh

            def spy(*regions: Region, **kwargs: Any) -> StreamView:
                layouts.append(bool(kwargs.get("layout")))
                return refresh(*regions, **kwargs)

            view.refresh = spy  # type: ignore[method-assign]
            for piece in pieces[:-150]:
                view.append(piece)
            await pilot.pause()
            assert len(view.text) > 8000
            layouts.clear()
            for piece in pieces[-150:]:
                work = view.work
                before = (work.wrapped_chars, work.rows_refreshed, work.rows_rendered)
                rows_before = len(view.rows)
                view.append(piece)
                await pilot.pause()
                wrapped = view.work.wrapped_chars - before[0]
                refreshed = view.work.rows_refreshed - before[1]
                rendered = view.work.rows_rendered - before[2]
                assert wrapped <= 2 * width + len(piece)  # the open row and the new text
                assert refreshed == len(view.rows) - rows_before + 1  # the rows that changed
                assert rendered <= height  # at most the rows in view, whatever the length
            assert not any(layouts)  # no screen layout for any of these appends
            assert view.work.full_wraps == 1  # the first layout; never again
            assert view.rows == full_rows(sanitize_for_display(text), width)

    asyncio.run(scenario())


def test_long_text_stays_correct_after_many_appends_and_a_resize() -> None:
    async def scenario() -> None:
        app = ViewApp()
        async with app.run_test(size=(50, 10)) as pilot:
            view = app.query_one(StreamView)
            await pilot.pause()
            rng = random.Random(4)
            text = random_text(rng, 1500) + HOSTILE
            position = 0
            while position < len(text):
                size = rng.randint(1, 30)
                view.append(text[position : position + size])
                position += size
                if rng.random() < 0.1:
                    await pilot.pause()
            view.end()
            await pilot.pause(view.follow_interval + 0.1)  # the last follow is due by then
            await follow_due(pilot, view)
            expected = sanitize_for_display(text)
            assert view.text == expected
            assert view.rows == full_rows(expected.replace("\t", "    "), 49)
            assert view.scroll_y == view.max_scroll_y > 0
            assert shown_rows(view)[-1] == view.rows[-1].rstrip()
            await pilot.resize_terminal(31, 14)
            await pilot.pause()
            width = view.scrollable_content_region.width
            assert width == 30
            assert view.work.full_wraps == 2
            assert view.rows == full_rows(expected.replace("\t", "    "), width)
            assert view.scroll_y == view.max_scroll_y  # still following the end
            assert all(cell_len(row) <= width for row in shown_rows(view))
            view.append(" and after")
            await pilot.pause(view.follow_interval + 0.1)
            await follow_due(pilot, view)
            assert view.scroll_y == view.max_scroll_y
            assert view.text == expected + " and after"
            assert view.rows == full_rows(view.text.replace("\t", "    "), width)

    asyncio.run(scenario())


def test_the_view_never_interprets_markup() -> None:
    async def scenario() -> None:
        app = ViewApp()
        async with app.run_test(size=(60, 5)) as pilot:
            view = app.query_one(StreamView)
            await pilot.pause()
            view.append("[bold red]not bold[/] [link=https://evil.example]x[/link]")
            await pilot.pause()
            region = Region(0, 0, view.size.width, view.size.height)
            (first, *_) = view.render_lines(region)
            assert (
                first.text.rstrip() == "[bold red]not bold[/] [link=https://evil.example]x[/link]"
            )
            for segment in first:
                assert segment.style is None or not (segment.style.bold or segment.style.link)

    asyncio.run(scenario())


def test_following_a_fast_stream_scrolls_at_most_every_interval() -> None:
    """A scroll repaints every row in view: a fast stream scrolls a few rows at a time."""

    async def scenario() -> None:
        app = ViewApp()
        async with app.run_test(size=(40, 8)) as pilot:
            view = app.query_one(StreamView)
            view.follow_interval = 0.2
            await pilot.pause()
            # Count only the follows of the stream: the first layout already followed the
            # (empty) end, at most 0.2 s before `started`; counting that one too let a
            # window that happened to end right after a follow exceed the bound by one.
            before = view.work.follows
            started = time.monotonic()
            for index in range(60):  # a new row every append, 100 appends a second
                view.append(f"row {index}\n")
                await pilot.pause(0.01)
            elapsed = time.monotonic() - started
            # Textual's timers sleep 0.5 ms less than asked (textual._time.sleep), so two
            # follows are at least 0.2 - 0.0005 s apart.
            assert view.work.follows - before <= elapsed / (0.2 - 0.0005) + 1
            await pilot.pause(0.3)
            await follow_due(pilot, view)
            assert view.scroll_y == view.max_scroll_y  # the end is in view once due
            assert shown_rows(view)[-2:] == ["row 59", ""]
            view.scroll_home(animate=False, immediate=True)  # the reader scrolls up: stay there
            await pilot.pause()
            follows = view.work.follows
            for index in range(5):
                view.append(f"more {index}\n")
                await pilot.pause(0.1)
            assert view.scroll_y == 0 and view.work.follows == follows

    asyncio.run(scenario())


# Several streams in one column ---------------------------------------------------------------

SCENARIO = parse_scenario(SMALL_SCENARIO)


class ColumnApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ConditionColumn(SCENARIO, SCENARIO.conditions[0], planned=8)


def test_several_streams_of_one_column_each_in_its_pane() -> None:
    async def scenario() -> None:
        app = ColumnApp()
        async with app.run_test(size=(60, 40)) as pilot:
            column = app.query_one(ConditionColumn)
            for sample in range(4):
                column.start_trial("wish", sample)
            await pilot.pause()
            assert len(column.panes) == 4 and "-several" in column.classes
            texts = {sample: "" for sample in range(4)}
            for step in range(30):
                for sample in list(texts):
                    piece = f"[b]s{sample}[/b]w{step} "
                    texts[sample] += piece
                    column.append_text("wish", sample, 0, piece)
                if step == 10:  # sample 2 stops first, the others go on
                    column.finish_trial("wish", 2, texts[2], "stop")
                    del texts[2]
                await pilot.pause()
            panes = column.panes
            assert [pane.trial for pane in panes] == [("wish", s) for s in range(4)]
            for sample, text in texts.items():
                assert panes[sample].text == text
                assert "-active" in panes[sample].classes
                assert str(panes[sample].border_title) == f"#{sample + 1} · generating…"
            assert "[b]s2[/b]w10" in panes[2].text and "w11" not in panes[2].text
            assert str(panes[2].border_title) == "#3 · finished (stop)"
            status = str(column.query_one(".column-status").render())
            assert status == "1/8 done · 3 generating…"
            assert "wish ×4" in str(column.query_one(".column-probe").render())
            for sample in (3, 0, 1):
                column.finish_trial("wish", sample, texts[sample], "length")
            await pilot.pause()
            # The column stays marked as the run's until the run moves on or stops; the
            # finished panes are no longer marked.
            assert "-active" in column.classes
            assert not any("-active" in pane.classes for pane in column.panes)
            assert column.done == 4 and column.in_flight == 0
            # The next cell decodes two samples: two panes are reused, the others hidden.
            column.start_trial("newcomer", 0)
            column.start_trial("newcomer", 1)
            column.append_text("newcomer", 0, 0, "new text")
            await pilot.pause()
            assert [pane.trial for pane in column.panes] == [("newcomer", 0), ("newcomer", 1)]
            assert column.panes[0].text == "new text" and column.panes[1].text == ""
            column.finish_trial("newcomer", 1, "one", "stop")
            column.finish_trial("newcomer", 0, "new text", "stop")
            column.start_trial("wish", 1)  # one at a time again: one untitled pane
            column.append_text("wish", 1, 0, "alone")
            await pilot.pause()
            assert len(column.panes) == 1 and "-several" not in column.classes
            assert column.panes[0].text == "alone"

    asyncio.run(scenario())


class TwoColumnsApp(App[None]):
    def compose(self) -> ComposeResult:
        with SideBySide():
            for condition in SCENARIO.conditions:
                yield ConditionColumn(SCENARIO, condition, planned=6)


def test_one_stream_trials_lay_out_nothing_and_restyle_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trial's start, text and end (one stream per column) cost repaints only: on two
    cores every screen layout or restyle of the UI thread is taken from generation."""
    layouts: list[str] = []
    restyles: list[str] = []
    refresh, update_styles = Widget.refresh, App.update_styles

    def spy_refresh(widget: Widget, *regions: Region, **kwargs: Any) -> Widget:
        if kwargs.get("layout"):
            layouts.append(type(widget).__name__)
        return refresh(widget, *regions, **kwargs)

    def spy_styles(app: App[Any], node: Any, animate: bool = True) -> None:
        restyles.append(type(node).__name__)
        update_styles(app, node, animate=animate)

    monkeypatch.setattr(Widget, "refresh", spy_refresh)
    monkeypatch.setattr(App, "update_styles", spy_styles)

    async def scenario() -> None:
        app = TwoColumnsApp()
        async with app.run_test(size=(100, 18)) as pilot:
            app.query_one(SideBySide).fit()
            column = app.query(ConditionColumn).first()
            column.start_trial("wish", 0)
            await pilot.pause()
            layouts.clear()
            restyles.clear()
            for probe, sample in [("wish", 0), ("newcomer", 0), ("newcomer", 1)]:
                if (probe, sample) != ("wish", 0):
                    column.start_trial(probe, sample)
                for step in range(60):  # more rows than the pane has: it scrolls
                    column.append_text(probe, sample, 0, f"word{step} ")
                    await pilot.pause()
                pane = column.panes[0]
                await follow_due(pilot, pane)  # the last rows may wait for their follow
                assert pane.max_scroll_y > 0 and pane.scroll_y == pane.max_scroll_y
                column.finish_trial(probe, sample, "the whole answer", "stop")
                await pilot.pause()
            line = str(column.query_one(ProbeLine).render())
            assert line.startswith("newcomer #2: How should we treat")
            assert (layouts, restyles) == ([], [])
            column.stop("complete")
            assert "-active" not in column.classes

    asyncio.run(scenario())


def line_text(column: ConditionColumn) -> str:
    return str(column.query_one(ProbeLine).render())


def test_batched_trials_taking_each_other_s_panes_lay_out_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four sequences at once, a trial of the next probe taking the pane of one that
    ended: the panes were made with the column, so the screen is never laid out again."""
    layouts: list[str] = []
    refresh = Widget.refresh

    def spy_refresh(widget: Widget, *regions: Region, **kwargs: Any) -> Widget:
        if kwargs.get("layout"):
            layouts.append(type(widget).__name__)
        return refresh(widget, *regions, **kwargs)

    class FourApp(App[None]):
        def compose(self) -> ComposeResult:
            yield ConditionColumn(SCENARIO, SCENARIO.conditions[0], planned=8, panes=4)

    async def scenario() -> None:
        app = FourApp()
        async with app.run_test(size=(60, 30)) as pilot:
            column = app.query_one(ConditionColumn)
            assert len(column.panes) == 4 and "-several" in column.classes
            monkeypatch.setattr(Widget, "refresh", spy_refresh)
            for sample in range(4):
                column.start_trial("wish", sample)
            for step in range(3):
                for sample in range(4):
                    column.append_text("wish", sample, 0, f"w{sample}.{step} ")
                await pilot.pause()
            column.finish_trial("wish", 2, "done", "stop")
            column.start_trial("newcomer", 0)  # takes the third pane
            column.append_text("newcomer", 0, 0, "new")
            column.append_text("wish", 0, 0, "more")
            await pilot.pause()
            titles = [str(pane.border_title) for pane in column.panes]
            # The probe line names the newest probe; the others' panes name their own.
            assert line_text(column).startswith("newcomer #1: ")
            assert titles == [
                "wish #1 · generating…",
                "wish #2 · generating…",
                "#1 · generating…",
                "wish #4 · generating…",
            ]
            assert column.panes[2].text == "new" and column.in_flight == 4
            for sample in (0, 1, 3):
                column.finish_trial("wish", sample, "done", "stop")
            column.finish_trial("newcomer", 0, "new", "stop")
            await pilot.pause()
            assert layouts == []

    asyncio.run(scenario())


def test_a_long_probe_is_cut_to_the_rows_of_the_probe_line() -> None:
    class LineApp(App[None]):
        def compose(self) -> ComposeResult:
            yield ProbeLine(Text(""), classes="line")

        CSS = "ProbeLine { width: 20; height: 3; }"

    async def scenario() -> None:
        app = LineApp()
        async with app.run_test(size=(40, 10)) as pilot:
            line = app.query_one(ProbeLine)
            line.show(Text("short [b]probe[/b]"))
            await pilot.pause()
            assert str(line.render()) == "short [b]probe[/b]"  # inert: markup shown as is
            line.show(Text(" ".join(f"word{i}" for i in range(40))))
            await pilot.pause()
            rows = str(line.render()).split("\n")
            assert len(rows) == 3 and rows[-1].endswith("…")
            assert all(cell_len(row) <= 20 for row in rows)
            assert line.text.plain.endswith("word39")  # the whole line is kept

    asyncio.run(scenario())


def batched_app(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[BatchedRunner]]:
    """The app with the Run screen's runner replaced by the batched stand-in."""
    runners: list[BatchedRunner] = []

    def runner(scenario: object, backend: object, store: Any) -> BatchedRunner:
        runners.append(BatchedRunner(scenario, backend, store))
        return runners[-1]

    monkeypatch.setattr("persona_tui.run.finish.Runner", runner)

    def loader(ref: str, config: object, backend: str) -> ScriptedBackend:
        return BatchingScriptedBackend(["unused"])

    return make_app(loader=loader), runners


@pytest.mark.parametrize("batch", [None, 3])
def test_batched_run_streams_every_sample_and_saves(
    make_app: Any, ui_home: Path, monkeypatch: pytest.MonkeyPatch, batch: int | None
) -> None:
    (ui_home / "config" / "scenarios" / "small.toml").write_text(
        SMALL_SCENARIO.replace("samples = 2", "samples = 3"), encoding="utf-8"
    )
    scenario_ = load_scenario(ui_home / "config" / "scenarios" / "small.toml")
    app, runners = batched_app(make_app, monkeypatch)

    async def scenario() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            request = RunRequest(
                model="scripted", scenario=scenario_, options=RunOptions(batch=batch)
            )
            screen = RunScreen(request, app.config, app.loader)
            await app.push_screen(screen)
            await wait_for(pilot, lambda: screen.finished_status == "complete")
            await pilot.pause()
            session = load_session(sessions_in(ui_home)[0])
            assert len(session.trials) == 18
            last_cell = {
                (t.condition, t.sample): t for t in session.trials if t.probe == "two-turns"
            }
            for column in screen.query(ConditionColumn):
                assert column.done == 9
                panes = column.panes
                assert [pane.trial for pane in panes] == [("two-turns", s) for s in range(3)]
                for sample, pane in enumerate(panes):
                    response = last_cell[(column.condition.id, sample)].response
                    assert pane.text == sanitize_for_display(response)
                    assert pane.text.startswith("[bold]not bold[/bold] ")  # shown literally
                    title = f"#{sample + 1} (turn 1/2) · finished (stop)"
                    assert str(pane.border_title) == title
            assert "18/18 trials" in str(screen.query_one(".run-status").render())
            await screen.shutdown()
        # The plan records what was asked for (None: the whole cell of 3).
        assert runners[0].batches == [3]

    asyncio.run(scenario())
