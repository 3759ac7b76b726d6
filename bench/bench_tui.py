"""Tokens/s of a scenario run in the app (headless Textual) vs the headless CLI runner.

Same scenario, model, seeds and options, alternating CLI and TUI runs so that machine load
affects both alike. Each run is its own process, as in real use: two threads driving
llama.cpp's OpenMP team in one process slow each other down (~20%), which would measure
the bench, not the app. Target: TUI/CLI ≥ 0.95 with one stream per column, ≥ 0.90 with 8
(`--samples 8 --batch 8`: batched decoding). The TUI side also reports the UI thread's CPU
time per streamed text batch.

    python bench/bench_tui.py [--model demo] [--scenario bully-school-play] [--rounds 2]
                              [--samples N] [--batch N]

`--ui-only` needs no model: it streams synthetic text into the Run screen's columns at a
fixed token rate and prints the UI thread's CPU per text batch by text length and number
of streams per column (the cost the app adds to generation).

    python bench/bench_tui.py --ui-only [--streams 1,8] [--lengths 0,2000,8000,32000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from persona_tui.cli.run import ProgressReporter
from persona_tui.models.config import load_config
from persona_tui.models.load import load_model
from persona_tui.run.lifecycle import create_session
from persona_tui.run.plan import RunOptions
from persona_tui.run.runner import Runner
from persona_tui.scenario.catalog import resolve_scenario
from persona_tui.scenario.parse import load_scenario
from persona_tui.session.store import load_session


def rate(path: Path) -> tuple[float, int, float]:
    """(tokens/s over generation time, tokens, generation seconds) of a session file."""
    trials = load_session(path).trials
    tokens = sum(t.completion_tokens for t in trials)
    seconds = sum(t.seconds for t in trials)
    return tokens / seconds, tokens, seconds


def run_cli(
    ref: str, scenario_ref: str, options: RunOptions, out: Path, batch: int | None
) -> float:
    config = load_config()
    scenario = load_scenario(resolve_scenario(scenario_ref))
    backend = load_model(ref, config, None)
    options = replace(options, batch=batch)
    try:
        store = create_session(scenario, backend, options, out)
        with store:
            Runner(scenario, backend, store).run(ProgressReporter(Console(file=io.StringIO())))
    finally:
        backend.close()
    return time.perf_counter()


def ui_figures_path(out: Path) -> Path:
    return out.with_suffix(".ui.json")


async def run_tui(
    ref: str,
    scenario_ref: str,
    options: RunOptions,
    out: Path,
    batch: int | None,
    profile: Path | None = None,
) -> None:
    from persona_tui.ui.app import create_app
    from persona_tui.ui.run_bridge import TextBatch
    from persona_tui.ui.screens.run import RunRequest, RunScreen

    app = create_app(persist_theme=False)
    scenario = load_scenario(resolve_scenario(scenario_ref))
    batches = 0

    def count(message: object) -> None:
        nonlocal batches
        batches += isinstance(message, TextBatch)

    async with app.run_test(size=(120, 40), message_hook=count):
        request = RunRequest(
            model=ref, scenario=scenario, options=replace(options, batch=batch), out=out
        )
        screen = RunScreen(request, app.config, app.loader)
        await app.push_screen(screen)
        # The UI thread is this one (run_test drives the app here): its CPU time is the app's.
        cpu, wall = time.thread_time(), time.perf_counter()
        profiler = None
        if profile is not None:  # the UI thread only: cProfile follows the thread enabling it
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        # Plain sleeps, not `pilot.pause`: a pause forces a screen refresh and queues a
        # callback on every widget, which cost the UI thread more than the app's own work.
        while screen.finished_status == "":
            if not app.is_running:
                raise RuntimeError(f"the app stopped before the run finished: {app._exception!r}")
            await asyncio.sleep(0.25)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        await screen.shutdown()
    figures = {"ui_cpu_seconds": cpu, "wall_seconds": wall, "text_batches": batches}
    ui_figures_path(out).write_text(json.dumps(figures), encoding="utf-8")


async def measure_streaming(
    scenario_ref: str, streams: list[int], lengths: list[int], seconds: float, rate: float
) -> None:
    """UI-thread CPU per text batch while synthetic tokens stream into one column."""
    import threading

    from textual.app import App, ComposeResult

    from persona_tui.run.events import TextChunk
    from persona_tui.run.plan import TrialSpec
    from persona_tui.ui.run_bridge import RunBridge, TextBatch
    from persona_tui.ui.widgets.condition_column import ConditionColumn
    from persona_tui.ui.widgets.side_by_side import SideBySide

    scenario = load_scenario(resolve_scenario(scenario_ref))
    probe = scenario.probes[0].id

    class Columns(App[None]):
        batches = 0

        def compose(self) -> ComposeResult:
            yield SideBySide(*(ConditionColumn(scenario, c, 8) for c in scenario.conditions))

        def on_mount(self) -> None:
            self.query_one(SideBySide).fit()
            self.columns = {c.condition.id: c for c in self.query(ConditionColumn)}

        def on_text_batch(self, message: TextBatch) -> None:  # as the Run screen does
            self.batches += 1
            for part in message.parts:
                spec = part.spec
                column = self.columns.get(spec.condition)
                if column is not None:
                    column.append_text(spec.probe, spec.sample, part.turn, part.text)

    def produce(bridge: RunBridge, specs: list[TrialSpec], prefill: int, stop: float) -> None:
        words = [
            "the",
            "bully",
            "in",
            "the",
            "school",
            "play",
            "shouts",
            "his",
            "lines",
            "at",
            "the",
            "newcomer",
        ]
        filler = " ".join(words[i % len(words)] for i in range(prefill // 5 + 1))
        for spec in specs:
            bridge(TextChunk(spec, filler[:prefill], 0))
        bridge.flush()
        step, tokens = 1 / rate, 0
        next_at = time.perf_counter()
        while time.perf_counter() < stop:
            for spec in specs:
                tokens += 1
                bridge(TextChunk(spec, " " + words[tokens % len(words)], 0))
                if tokens % 60 == 0:
                    bridge(TextChunk(spec, "\n\n", 0))
                next_at += step
                time.sleep(max(0.0, next_at - time.perf_counter()))
        bridge.flush()

    print(f"UI thread CPU per text batch, {rate:.0f} tokens/s in all, {seconds:.0f}s each")
    print("| streams | text length (chars) | batches/s | ms per batch | % of a core |")
    print("| --- | --- | --- | --- | --- |")
    condition = scenario.conditions[0].id
    for n in streams:
        for length in lengths:
            app = Columns()
            async with app.run_test(size=(120, 40)):
                await asyncio.sleep(0.2)
                column = app.query_one(ConditionColumn)
                specs = [TrialSpec(condition, probe, sample, sample) for sample in range(n)]
                for spec in specs:
                    column.start_trial(spec.probe, spec.sample)
                bridge = RunBridge(app.post_message)
                settle = 1.0 + length / 20000  # the prefill is shown before measuring
                stop = time.perf_counter() + settle + seconds
                worker = threading.Thread(target=produce, args=(bridge, specs, length, stop))
                worker.start()
                await asyncio.sleep(settle)
                cpu, batches, wall = time.thread_time(), app.batches, time.perf_counter()
                await asyncio.sleep(seconds)
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                batches = app.batches - batches
                worker.join()
            print(
                f"| {n} | {length}–{length + int(rate * seconds * 6 / n)} | "
                f"{batches / wall:.0f} | {cpu / max(batches, 1) * 1000:.2f} | {cpu / wall:.0%} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--scenario", default="bully-school-play")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--probes", default="", help="comma-separated probe ids (default: all)")
    parser.add_argument("--samples", type=int, default=1, help="samples per cell (default 1)")
    parser.add_argument("--batch", type=int, help="sequences decoded together (runner default)")
    parser.add_argument("--ui-only", action="store_true", help="synthetic text, no model")
    parser.add_argument("--streams", default="1,8", help="--ui-only: streams per column")
    parser.add_argument("--lengths", default="0,2000,8000,32000", help="--ui-only: chars")
    parser.add_argument("--seconds", type=float, default=4.0, help="--ui-only: per measurement")
    parser.add_argument("--rate", type=float, default=100.0, help="--ui-only: tokens/s in all")
    parser.add_argument(
        "--profile", type=Path, help="cProfile the app's UI thread into this file (app side only)"
    )
    parser.add_argument("--side", choices=("cli", "tui"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ui_only:
        streams = [int(n) for n in args.streams.split(",")]
        lengths = [int(n) for n in args.lengths.split(",")]
        asyncio.run(measure_streaming(args.scenario, streams, lengths, args.seconds, args.rate))
        return
    os.environ.setdefault("PERSONA_TUI_HOME", tempfile.mkdtemp(prefix="persona-bench-"))
    options = RunOptions(
        samples=args.samples,
        max_tokens=args.max_tokens,
        probes=[p for p in args.probes.split(",") if p] or None,
    )
    if args.side == "cli":
        run_cli(args.model, args.scenario, options, args.out, args.batch)
        return
    if args.side == "tui":
        asyncio.run(run_tui(args.model, args.scenario, options, args.out, args.batch, args.profile))
        return
    if args.profile is not None:  # one app run, profiled (its figures are not comparable)
        out = Path(tempfile.mkdtemp(prefix="persona-bench-sessions-")) / "tui.toml"
        asyncio.run(run_tui(args.model, args.scenario, options, out, args.batch, args.profile))
        print(f"profile of the UI thread: {args.profile} (python -m pstats {args.profile})")
        return

    def run_side(side: str, out: Path) -> None:
        command = [sys.executable, __file__, *sys.argv[1:], "--side", side, "--out", str(out)]
        subprocess.run(command, check=True)

    folder = Path(tempfile.mkdtemp(prefix="persona-bench-sessions-"))
    cli_rates: list[float] = []
    tui_rates: list[float] = []
    ui_costs: list[float] = []
    ratios: list[float] = []
    for round_ in range(args.rounds):
        cli_out, tui_out = folder / f"cli-{round_}.toml", folder / f"tui-{round_}.toml"
        # ABBA order: drift in machine load affects both sides alike over two rounds.
        for side, out in (("cli", cli_out), ("tui", tui_out))[:: 1 if round_ % 2 == 0 else -1]:
            run_side(side, out)
        c, t = rate(cli_out), rate(tui_out)
        ratios.append(t[0] / c[0])
        cli_rates.append(c[0])
        tui_rates.append(t[0])
        same = [x.response for x in load_session(cli_out).trials] == [
            x.response for x in load_session(tui_out).trials
        ]
        ui = json.loads(ui_figures_path(tui_out).read_text(encoding="utf-8"))
        per_batch = ui["ui_cpu_seconds"] / max(ui["text_batches"], 1) * 1000
        ui_costs.append(per_batch)
        print(
            f"round {round_ + 1}: TUI/CLI {ratios[-1]:.3f} · "
            f"CLI {c[0]:.1f} tok/s ({c[1]} tokens in {c[2]:.1f}s) · "
            f"TUI {t[0]:.1f} tok/s ({t[1]} tokens in {t[2]:.1f}s) · identical responses: {same}"
            f" · UI thread {ui['ui_cpu_seconds']:.2f}s CPU in {ui['wall_seconds']:.1f}s"
            f" ({ui['ui_cpu_seconds'] / ui['wall_seconds']:.0%} of a core),"
            f" {per_batch:.2f} ms per text batch ({ui['text_batches']} batches)"
        )
    cli, tui = statistics.median(cli_rates), statistics.median(tui_rates)
    print(
        f"median CLI {cli:.1f} tok/s · TUI {tui:.1f} tok/s · TUI/CLI = {tui / cli:.3f}"
        f" (median of the rounds' ratios {statistics.median(ratios):.3f})"
        f" · UI thread {statistics.median(ui_costs):.2f} ms CPU per text batch"
    )


if __name__ == "__main__":
    main()
