"""Tokens/s of a scenario run in the app (headless Textual) vs the headless CLI runner.

Same scenario, model, seeds and options, alternating CLI and TUI runs so that machine load
affects both alike. Each run is its own process, as in real use: two threads driving
llama.cpp's OpenMP team in one process slow each other down (~20%), which would measure
the bench, not the app. Target: TUI/CLI ≥ 0.90.

    python bench/bench_tui.py [--model demo] [--scenario bully-school-play] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
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


def run_cli(ref: str, scenario_ref: str, options: RunOptions, out: Path) -> float:
    config = load_config()
    scenario = load_scenario(resolve_scenario(scenario_ref))
    backend = load_model(ref, config, None)
    try:
        store = create_session(scenario, backend, options, out)
        with store:
            Runner(scenario, backend, store).run(ProgressReporter(Console(file=io.StringIO())))
    finally:
        backend.close()
    return time.perf_counter()


async def run_tui(ref: str, scenario_ref: str, options: RunOptions, out: Path) -> None:
    from persona_tui.ui.app import create_app
    from persona_tui.ui.screens.run import RunRequest, RunScreen

    app = create_app(persist_theme=False)
    scenario = load_scenario(resolve_scenario(scenario_ref))
    async with app.run_test(size=(120, 40)) as pilot:
        request = RunRequest(model=ref, scenario=scenario, options=options, out=out)
        screen = RunScreen(request, app.config, app.loader)
        await app.push_screen(screen)
        while screen.finished_status == "":
            await pilot.pause(0.05)
        await screen.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--scenario", default="bully-school-play")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--probes", default="", help="comma-separated probe ids (default: all)")
    parser.add_argument("--side", choices=("cli", "tui"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("PERSONA_TUI_HOME", tempfile.mkdtemp(prefix="persona-bench-"))
    options = RunOptions(
        samples=1,
        max_tokens=args.max_tokens,
        probes=[p for p in args.probes.split(",") if p] or None,
    )
    if args.side == "cli":
        run_cli(args.model, args.scenario, options, args.out)
        return
    if args.side == "tui":
        asyncio.run(run_tui(args.model, args.scenario, options, args.out))
        return

    def run_side(side: str, out: Path) -> None:
        command = [sys.executable, __file__, *sys.argv[1:], "--side", side, "--out", str(out)]
        subprocess.run(command, check=True)

    folder = Path(tempfile.mkdtemp(prefix="persona-bench-sessions-"))
    cli_rates: list[float] = []
    tui_rates: list[float] = []
    for round_ in range(args.rounds):
        cli_out, tui_out = folder / f"cli-{round_}.toml", folder / f"tui-{round_}.toml"
        run_side("cli", cli_out)
        run_side("tui", tui_out)
        c, t = rate(cli_out), rate(tui_out)
        cli_rates.append(c[0])
        tui_rates.append(t[0])
        same = [x.response for x in load_session(cli_out).trials] == [
            x.response for x in load_session(tui_out).trials
        ]
        print(
            f"round {round_ + 1}: CLI {c[0]:.1f} tok/s ({c[1]} tokens in {c[2]:.1f}s) · "
            f"TUI {t[0]:.1f} tok/s ({t[1]} tokens in {t[2]:.1f}s) · identical responses: {same}"
        )
    cli, tui = statistics.median(cli_rates), statistics.median(tui_rates)
    print(f"median CLI {cli:.1f} tok/s · TUI {tui:.1f} tok/s · TUI/CLI = {tui / cli:.3f}")


if __name__ == "__main__":
    main()
