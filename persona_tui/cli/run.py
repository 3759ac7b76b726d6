"""`persona-tui run`: run a scenario without the app, with progress on stderr.

The session file's path is the last line printed on stdout, so scripts can capture it.
SIGINT/SIGTERM cancel the current trial; every finished trial is already saved and the
session is left `interrupted`, ready for `--resume`.

After sampling, the answer options of the scenario's probes are scored (likelihood probes,
scoring/options.py), each (condition, probe) cell saved as it is done; `--no-score` skips
that pass and `--no-sample` skips sampling. `--resume` completes both.
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from persona_tui.errors import PersonaError
from persona_tui.models.config import Config, load_config
from persona_tui.models.load import load_model
from persona_tui.run.lifecycle import create_session, resume_session
from persona_tui.run.plan import RunOptions
from persona_tui.run.runner import (
    RunControl,
    RunEvent,
    RunFinished,
    Runner,
    RunStarted,
    TrialFailed,
    TrialFinished,
    TrialStarted,
)
from persona_tui.scenario.catalog import resolve_scenario
from persona_tui.scenario.parse import load_scenario
from persona_tui.scoring.options import (
    OPTIONS_UNSUPPORTED,
    OptionsProgress,
    OptionsSummary,
    can_score_options,
    option_cells,
    score_options,
)
from persona_tui.session.model import SessionStatus
from persona_tui.session.store import SessionStore
from persona_tui.training.adapters import parse_adapters_option, study_adapters


class ProgressReporter:
    """Turns runner events into a rich progress bar (TTY) or plain lines (pipes, CI)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.tokens = 0
        self.clock = time.perf_counter()

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            self.clock = time.perf_counter()
            if self.console.is_terminal:
                self.progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    console=self.console,
                )
                self.progress.start()
                self.task = self.progress.add_task(
                    "trials", total=event.total, completed=event.done, rate=""
                )
            else:
                self.console.print(f"running {event.total - event.done} of {event.total} trials")
        elif isinstance(event, TrialStarted):
            if self.progress is not None and self.task is not None:
                spec = event.spec
                self.progress.update(
                    self.task, description=f"{spec.condition} · {spec.probe} #{spec.sample}"
                )
        elif isinstance(event, TrialFinished):
            self.tokens += event.trial.completion_tokens
            rate = self.tokens / max(time.perf_counter() - self.clock, 1e-9)
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, completed=event.done, rate=f"{rate:.0f} tok/s")
            else:
                t = event.trial
                self.console.print(
                    f"[{event.done}/{event.total}] {t.condition} · {t.probe} #{t.sample}: "
                    f"{t.completion_tokens} tokens in {t.seconds:.2f}s ({t.finish_reason})",
                    markup=False,
                    highlight=False,
                )
        elif isinstance(event, TrialFailed):
            spec = event.spec
            self.console.print(
                f"trial {spec.condition} · {spec.probe} #{spec.sample} failed: {event.error}",
                markup=False,
                highlight=False,
            )
        elif isinstance(event, RunFinished):
            if self.progress is not None:
                self.progress.stop()
            self.console.print(
                f"{event.status}: {event.done}/{event.total} trials"
                + (f", {event.failed} failed" if event.failed else ""),
                highlight=False,
            )


class OptionsReporter:
    """Progress of the options pass on stderr: a bar on a terminal, else a line per cell."""

    def __init__(self, console: Console, total: int, done: int) -> None:
        self.console = console
        self.clock = time.perf_counter()
        self.options = 0
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        if console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            self.progress.start()
            self.task = self.progress.add_task("options", total=total, completed=done, rate="")
        else:
            console.print(f"scoring options of {total - done} of {total} cells", highlight=False)

    def __call__(self, event: OptionsProgress) -> None:
        cell = event.cell
        self.options += len(cell.options)
        rate = self.options / max(time.perf_counter() - self.clock, 1e-9)
        if self.progress is not None and self.task is not None:
            self.progress.update(
                self.task,
                completed=event.done,
                description=f"{cell.condition} · {cell.probe}",
                rate=f"{rate:.1f} options/s",
            )
        else:
            self.console.print(
                f"[{event.done}/{event.total}] options {cell.condition} · {cell.probe}: "
                f"{len(cell.options)} options in {cell.seconds:.2f}s",
                markup=False,
                highlight=False,
            )

    def finish(self, summary: OptionsSummary) -> None:
        if self.progress is not None:
            self.progress.stop()
        state = "complete" if summary.complete else "interrupted"
        self.console.print(
            f"options {state}: {summary.done}/{summary.total} cells", highlight=False
        )


@contextmanager
def cancel_on_signals(control: RunControl) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        control.cancel()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _open(args: argparse.Namespace, config: Config) -> tuple[Runner, SessionStore]:
    if args.adapters and args.resume is not None:
        raise PersonaError("--adapters is for a new run; a resumed session uses its own")
    if args.resume is not None:
        scenario, store, backend = resume_session(
            args.resume,
            lambda ref: load_model(ref, config, args.threads, args.backend, args.repack),
            args.model,
        )
        return Runner(scenario, backend, store), store
    if not args.scenario:
        raise PersonaError("name a scenario to run (a file or an id; see `persona-tui scenarios`)")
    scenario = load_scenario(resolve_scenario(args.scenario))
    backend = load_model(
        args.model or config.default_model, config, args.threads, args.backend, args.repack
    )
    options = RunOptions(
        samples=args.samples,
        seed=args.seed,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        conditions=args.conditions,
        probes=args.probes,
        batch=args.batch,
    )
    try:
        adapters = study_adapters(
            scenario,
            Path(backend.info.path),
            backend.info.sha256,
            parse_adapters_option(args.adapters) if args.adapters else None,
            args.conditions,
            backend=backend.info.backend,
        )
        store = create_session(scenario, backend, options, args.out, adapters)
    except BaseException:
        backend.close()
        raise
    return Runner(scenario, backend, store), store


def score_session(
    runner: Runner, store: SessionStore, console: Console, control: RunControl
) -> OptionsSummary:
    cells = option_cells(runner.scenario, store.session.header.plan)
    reporter = OptionsReporter(console, len(cells), len(store.session.option_cells))
    summary = score_options(runner.scenario, runner.backend, store, reporter, control.cancelled)
    reporter.finish(summary)
    return summary


def run_headless(args: argparse.Namespace) -> int:
    """Run (or resume) a session; exit 0 complete, 1 trials failed, 130 interrupted."""
    if args.no_sample and args.no_score:
        raise PersonaError("--no-sample and --no-score leave nothing to do; drop one of them")
    config = load_config()
    console = Console(stderr=True)
    runner, store = _open(args, config)
    control = RunControl()
    score = not args.no_score and bool(option_cells(runner.scenario, store.session.header.plan))
    try:
        if score and not can_score_options(runner.backend):
            if args.no_sample:
                raise PersonaError(OPTIONS_UNSUPPORTED)
            console.print(f"options not scored: {OPTIONS_UNSUPPORTED}", highlight=False)
            score = False
        with cancel_on_signals(control):
            status: SessionStatus = "complete"
            if not args.no_sample:
                status = runner.run(ProgressReporter(console), control, parallel=args.parallel)
            scored = score and not control.cancelled.is_set()
            if scored and not score_session(runner, store, console, control).complete:
                status = "interrupted"
            if status == "complete" or control.cancelled.is_set():
                # The file says what is left to do: trials (skipped by --no-sample) or options.
                unsampled = len(store.session.trials) < store.session.header.plan.total
                saved: SessionStatus = "interrupted" if unsampled else status
                if saved != store.session.header.status:
                    store.set_status(saved)
        session = store.session
    finally:
        store.close()
        runner.backend.close()
    print(session.path)
    if status == "complete":
        return 0
    if control.cancelled.is_set():
        console.print(f"resume with: persona-tui run --resume {session.path}", highlight=False)
        return 130
    return 1
