"""`persona-tui run`: run a scenario without the app, with progress on stderr.

The session file's path is the last line printed on stdout, so scripts can capture it.
SIGINT/SIGTERM cancel the current trial; every finished trial is already saved and the
session is left `interrupted`, ready for `--resume`.

After sampling, the answer options of the scenario's probes are scored (likelihood probes,
run/options.py), each (condition, probe) cell saved as it is done; `--no-score` skips
that pass and `--no-sample` skips sampling. The session records that choice, so
`--resume` completes what the run chose to do (`--score`, `--sample` turn a pass back on,
`--no-score`, `--no-sample` off, and the new choice is recorded).
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.progress import (
    Progress,
    TaskID,
)

from persona_tui.cli.progress import VectorsReporter, cancel_on_signals, progress_bar
from persona_tui.models.config import load_config
from persona_tui.run.adapters import parse_adapters_option
from persona_tui.run.events import (
    OptionsFinished,
    OptionsProgress,
    OptionsStarted,
    ProjectionsProgress,
    ProjectionsSkipped,
    RunEvent,
    RunFinished,
    RunStarted,
    TrialFailed,
    TrialFinished,
    TrialStarted,
    VectorsExtracted,
    VectorsProgress,
)
from persona_tui.run.finish import finish_run
from persona_tui.run.lifecycle import RunRequest, open_run
from persona_tui.run.plan import RunOptions, run_choices
from persona_tui.run.runner import RunControl
from persona_tui.scenario.catalog import resolve_scenario
from persona_tui.scenario.parse import load_scenario


class ProgressReporter:
    """Turns a run's events into rich progress bars (TTY) or plain lines (pipes, CI): the
    trials, then the option pass."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.tokens = 0
        self.clock = time.perf_counter()
        self.options: OptionsReporter | None = None  # while the option pass runs
        self.vectors = VectorsReporter(console)  # extraction and the projection pass

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            self.clock = time.perf_counter()
            if self.console.is_terminal:
                self.progress = progress_bar(self.console)
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
                    self.task, description=f"{spec.arm.name} · {spec.probe} #{spec.sample}"
                )
        elif isinstance(event, TrialFinished):
            self.tokens += event.trial.completion_tokens
            rate = self.tokens / max(time.perf_counter() - self.clock, 1e-9)
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, completed=event.done, rate=f"{rate:.0f} tok/s")
            else:
                t = event.trial
                self.console.print(
                    f"[{event.done}/{event.total}] {t.arm.name} · {t.probe} #{t.sample}: "
                    f"{t.completion_tokens} tokens in {t.seconds:.2f}s ({t.finish_reason})",
                    markup=False,
                    highlight=False,
                )
        elif isinstance(event, TrialFailed):
            spec = event.spec
            self.console.print(
                f"trial {spec.arm.name} · {spec.probe} #{spec.sample} failed: {event.error}",
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
        elif isinstance(event, VectorsProgress | VectorsExtracted | ProjectionsProgress):
            self.vectors(event)
        elif isinstance(event, ProjectionsSkipped):
            self.console.print(event.note, highlight=False, markup=False)
        elif isinstance(event, OptionsStarted):
            self.options = OptionsReporter(self.console, event.total, event.done)
        elif isinstance(event, OptionsProgress):
            if self.options is not None:
                self.options(event)
        elif isinstance(event, OptionsFinished):
            if self.options is not None:
                self.options.finish(event)
                self.options = None
            elif not event.failed:  # a failure reaches the caller as an error
                self.console.print(event.note, highlight=False, markup=False)


class OptionsReporter:
    """Progress of the options pass on stderr: a bar on a terminal, else a line per cell."""

    def __init__(self, console: Console, total: int, done: int) -> None:
        self.console = console
        self.clock = time.perf_counter()
        self.options = 0
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        if console.is_terminal:
            self.progress = progress_bar(console)
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
                description=f"{cell.arm.name} · {cell.probe}",
                rate=f"{rate:.1f} options/s",
            )
        else:
            self.console.print(
                f"[{event.done}/{event.total}] options {cell.arm.name} · {cell.probe}: "
                f"{len(cell.options)} options in {cell.seconds:.2f}s",
                markup=False,
                highlight=False,
            )

    def finish(self, event: OptionsFinished) -> None:
        if self.progress is not None:
            self.progress.stop()
        summary = event.summary
        if summary is None:  # the pass failed: the error reaches the caller
            return
        state = "complete" if summary.complete else "interrupted"
        self.console.print(
            f"options {state}: {summary.done}/{summary.total} cells", highlight=False
        )


def run_request(args: argparse.Namespace) -> RunRequest:
    """What `persona-tui run` was asked to run."""
    scenario = None
    if args.resume is None and args.scenario:
        scenario = load_scenario(resolve_scenario(args.scenario))
    return RunRequest(
        config=load_config(),
        scenario=scenario,
        resume=args.resume,
        model=args.model,
        backend=args.backend,
        threads=args.threads,
        repack=args.repack,
        options=RunOptions(
            samples=args.samples,
            seed=args.seed,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            conditions=args.conditions,
            probes=args.probes,
            batch=args.batch,
            sample=args.sample,
            score=args.score,
        ),
        out=args.out,
        adapters=parse_adapters_option(args.adapters) if args.adapters else {},
        vectors=tuple(args.vectors),
        projections=args.projections,
    )


def run_headless(args: argparse.Namespace) -> int:
    """Run (or resume) a session; exit 0 complete, 1 trials failed, 130 interrupted."""
    run_choices(RunOptions(sample=args.sample, score=args.score))  # refused before loading
    console = Console(stderr=True)
    reporter = ProgressReporter(console)
    control = RunControl()
    with open_run(run_request(args), reporter) as run, cancel_on_signals(control):
        outcome = finish_run(run, reporter, control, parallel=args.parallel)
        path = run.store.session.path
    print(path)
    if outcome.status == "complete":
        return 0
    if outcome.cancelled:
        console.print(f"resume with: persona-tui run --resume {path}", highlight=False)
        return 130
    return 1
