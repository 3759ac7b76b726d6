"""`persona-tui train SCENARIO --model M`: LoRA adapters per training condition, `replicates`
training runs of each (`--replicates N`, else the scenario's `[training] replicates`).

Before training it prints the work (runs, steps and tokens per run) and the estimated time
(from earlier runs in the output folder, else after the first steps). Progress goes to
stderr (a rich bar with loss, held-out loss, tokens/s and ETA on a terminal, a line per
step otherwise, each naming the replicate: "learns r2/3 step 5/26"); a table of every
replicate ends it. The first Ctrl-C (or SIGTERM) stops after the current step with
a checkpoint saved and prints the command that resumes; a second one interrupts at once
(the last checkpoint is kept). The output folder is the last line printed on stdout.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from persona_tui.training.params import ConditionResult, TrainingEvent, TrainingPlan


def add_train_command(subparsers: Any) -> None:
    """Add `train` to `subparsers` (from add_subparsers())."""
    train = subparsers.add_parser(
        "train",
        help="fine-tune one LoRA adapter per training condition of a training study "
        "(needs the train extra: pip install 'persona-tui[train]')",
    )
    train.add_argument("scenario", help="a training study: a scenario file or id")
    train.add_argument(
        "--model", "-m", help="'demo', a config alias, or a GGUF file (default: the config's)"
    )
    train.add_argument(
        "-o",
        "--out",
        type=Path,
        help="output folder (default: the data folder's adapters/SCENARIO--MODEL)",
    )
    add_training_options(train)
    train.add_argument(
        "--conditions",
        type=lambda v: [p.strip() for p in v.split(",") if p.strip()],
        help="only these training conditions (a,b,...)",
    )
    train.set_defaults(func=cmd_train)


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The hyperparameter options `train` and `study` share."""
    parser.add_argument("--epochs", type=int, help="passes over the training examples (1)")
    parser.add_argument("--rank", type=int, help="LoRA rank (8)")
    parser.add_argument("--alpha", type=float, help="LoRA alpha (2 × rank)")
    parser.add_argument("--lr", type=float, help="learning rate (1e-4)")
    parser.add_argument("--batch-size", type=int, help="examples per optimizer step (4)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    parser.add_argument(
        "--checkpoint-every", type=int, help="checkpoint and held-out loss every N steps (10)"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--replicates",
        type=int,
        help="training runs per condition, each with its own seed (default: the scenario's "
        "[training] replicates, else 1)",
    )
    parser.add_argument(
        "--keep-checkpoints",
        action="store_true",
        default=None,
        help="keep the adapter of every checkpoint (RUN/checkpoints/step-N/, torch on a "
        "GGUF), to probe the training trajectory (study --probe-checkpoints does)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        help="torch's numeric path: bf16 autocast of the matrix products or fp32 "
        "(auto: bf16 where the CPU has bfloat16 matrix units, AMX or AVX512-BF16; else fp32)",
    )


def training_params(args: argparse.Namespace) -> Any:
    from persona_tui.errors import PersonaError
    from persona_tui.training.params import TrainingParams

    defaults = TrainingParams()
    for name in (
        "epochs",
        "rank",
        "batch_size",
        "max_steps",
        "checkpoint_every",
        "threads",
        "replicates",
    ):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise PersonaError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.lr is not None and not args.lr > 0:
        raise PersonaError(f"--lr must be > 0, got {args.lr}")
    rank = args.rank or defaults.rank
    return TrainingParams(
        epochs=args.epochs or defaults.epochs,
        rank=rank,
        alpha=args.alpha if args.alpha is not None else 2.0 * rank,
        lr=args.lr or defaults.lr,
        batch_size=args.batch_size or defaults.batch_size,
        max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every or defaults.checkpoint_every,
        threads=args.threads,
        precision=args.precision or defaults.precision,
    )


class TrainReporter:
    """Training events → a rich progress bar (terminal) or one line per step (pipes); the
    plan and its estimated time first, a table of every replicate at the end (`summary`)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.heldout = ""
        self.plan: TrainingPlan | None = None
        self.results: list[ConditionResult] = []
        self.stepped = False  # the estimate from the first steps was printed

    def _run(self, condition: str, replicate: int) -> str:
        """ "learns r2/3" (just "learns" when the study trains each condition once)."""
        n = self.plan.replicates if self.plan is not None else 1
        return f"{condition} r{replicate}/{n}" if n > 1 else condition

    def __call__(self, event: TrainingEvent) -> None:
        from persona_tui.training.estimate import (
            describe_plan,
            describe_rate_estimate,
            estimate_after,
        )
        from persona_tui.training.params import (
            ConditionFinished,
            HeldoutEvaluated,
            StepFinished,
            TrainingPhase,
            TrainingPlanned,
            TrainingStarted,
        )

        if isinstance(event, TrainingPlanned):
            self.plan = event.plan
            self.console.print(
                f"to train: {describe_plan(event.plan)}", highlight=False, markup=False
            )
        elif isinstance(event, TrainingPhase):
            where = f"{self._run(event.condition, event.replicate)}: " if event.condition else ""
            self.console.print(f"{where}{event.message}", highlight=False, markup=False)
        elif isinstance(event, TrainingStarted):
            self.heldout = ""
            resumed = f", resuming at step {event.done_steps}" if event.done_steps else ""
            self.console.print(
                f"{self._run(event.condition, event.replicate)}: {event.train_examples} "
                "training examples, "
                f"{event.heldout_examples} held out, {event.total_steps} steps{resumed}",
                highlight=False,
                markup=False,
            )
            if self.console.is_terminal:
                self._start_bar(event)
        elif isinstance(event, HeldoutEvaluated):
            self.heldout = f"held-out {event.loss:.3f}"
            if self.progress is None:
                self.console.print(
                    f"{self._run(event.condition, event.replicate)} step {event.step}: "
                    f"held-out loss {event.loss:.4f}",
                    highlight=False,
                )
            elif self.task is not None:
                self.progress.update(self.task, heldout=self.heldout)
        elif isinstance(event, StepFinished):
            plan = self.plan
            waited = event.step >= estimate_after(event.total_steps)
            if plan is not None and plan.seconds_per_token is None and not self.stepped and waited:
                # No earlier run to estimate from: the rate of the first steps says.
                self._print(describe_rate_estimate(plan, event.tokens_per_second))
                self.stepped = True
            if self.progress is not None and self.task is not None:
                self.progress.update(
                    self.task,
                    completed=event.step,
                    loss=f"loss {event.loss:.3f}",
                    rate=f"{event.tokens_per_second:.0f} tok/s",
                    eta=f"ETA {_duration(event.eta_seconds)}",
                )
            else:
                self.console.print(
                    f"{self._run(event.condition, event.replicate)} step "
                    f"{event.step}/{event.total_steps}: loss "
                    f"{event.loss:.4f}, {event.tokens_per_second:.0f} tok/s, ETA "
                    f"{_duration(event.eta_seconds)}",
                    highlight=False,
                )
        elif isinstance(event, ConditionFinished):
            self._stop_bar()
            result = event.result
            self.results.append(result)
            losses = ", ".join(
                f"{name} loss {value:.4f}"
                for name, value in (("train", result.train_loss), ("held-out", result.heldout_loss))
                if value is not None
            )
            kept: Path = result.adapter or (result.folder / "checkpoint")
            self.console.print(
                f"{self._run(result.condition, result.replicate)}: {result.status} "
                f"({result.steps}/{result.total_steps} "
                f"steps, {result.seconds:.1f}s{', ' + losses if losses else ''}): {kept}",
                highlight=False,
                markup=False,
            )

    def _print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, highlight=False, markup=False)
        else:
            self.console.print(text, highlight=False, markup=False)

    def summary(self) -> None:
        """A table of every run this training reached: its folder (condition/replicate-k,
        holding the adapter, or the checkpoint of an interrupted run), status, steps, losses
        and time; narrow enough for 80 columns."""
        from rich import box
        from rich.table import Table

        if not self.results:
            return
        where = self.results[0].folder.parent.parent
        table = Table(box=box.SIMPLE)
        table.add_column("run")
        for column in ("status", "steps", "loss", "held-out", "time"):
            table.add_column(column, justify="left" if column == "status" else "right")
        for r in self.results:
            table.add_row(
                f"{r.folder.parent.name}/{r.folder.name}",
                r.status,
                f"{r.steps}/{r.total_steps}",
                "" if r.train_loss is None else f"{r.train_loss:.4f}",
                "" if r.heldout_loss is None else f"{r.heldout_loss:.4f}",
                _duration(r.seconds),
            )
        self.console.print(
            f"training runs in {where}:", highlight=False, markup=False, soft_wrap=True
        )
        self.console.print(table, highlight=False)

    def _start_bar(self, event: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TextColumn("{task.fields[heldout]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[eta]}"),
            console=self.console,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            self._run(event.condition, event.replicate),
            total=event.total_steps,
            completed=event.done_steps,
            loss="",
            heldout=self.heldout,
            rate="",
            eta="",
        )

    def _stop_bar(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.progress = None
        self.task = None


def _duration(seconds: float) -> str:
    from persona_tui.training.estimate import duration_text

    return duration_text(seconds)


@contextmanager
def stop_on_signals(cancel: threading.Event) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop after the current step; a second SIGINT: at once."""

    def handler(signum: int, frame: FrameType | None) -> None:
        cancel.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def resume_command(args: argparse.Namespace, out: Path, command: str = "train") -> str:
    """The command that carries on where `args` stopped: the same options, folder `out`."""
    parts = ["persona-tui", command, args.scenario]
    if args.model:
        parts += ["--model", args.model]
    parts += ["-o", str(out)]
    for name in (
        "epochs",
        "rank",
        "alpha",
        "lr",
        "batch_size",
        "max_steps",
        "checkpoint_every",
        "threads",
        "precision",
        "replicates",
        "samples",  # study's probing options from here on
        "max_tokens",
    ):
        value = getattr(args, name, None)
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    for name in ("conditions", "probes"):
        if getattr(args, name, None):
            parts += [f"--{name}", ",".join(getattr(args, name))]
    for name in ("keep_checkpoints", "probe_checkpoints"):
        if getattr(args, name, None):
            parts.append(f"--{name.replace('_', '-')}")
    for name in ("sample", "score"):  # study's choice of passes (a session records it too)
        choice = getattr(args, name, None)
        if choice is not None:
            parts.append(f"--{name}" if choice else f"--no-{name}")
    return shlex.join(parts)


def quiet_libraries() -> None:
    """The command's own progress is the only one shown: transformers' conversion bars and
    its deprecation warnings (raised from peft) would tear through the progress bar."""
    import importlib
    import warnings

    try:
        hf_logging: Any = importlib.import_module("transformers.utils.logging")
    except ImportError:  # MLX training without transformers' extras: nothing to quiet
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")


def cmd_train(args: argparse.Namespace) -> int:
    """Train the study; exit 0 when every adapter is done, 130 when interrupted."""
    from rich.console import Console

    from persona_tui.backends.detect import is_mlx_model
    from persona_tui.models.config import load_config
    from persona_tui.run.adapters import default_output
    from persona_tui.scenario.catalog import resolve_scenario
    from persona_tui.scenario.parse import load_scenario
    from persona_tui.training.deps import require_training
    from persona_tui.training.locate import training_model_path
    from persona_tui.training.study import train_study

    params = training_params(args)
    scenario = load_scenario(resolve_scenario(args.scenario))
    model_path = training_model_path(args.model, load_config())
    if not is_mlx_model(model_path):  # a GGUF: torch + peft (an MLX folder needs only mlx-lm)
        require_training()  # the one-line install hint before any slow work
    quiet_libraries()
    out = args.out or default_output(scenario.id, model_path)
    console = Console(stderr=True)
    reporter = TrainReporter(console)
    cancel = threading.Event()
    try:
        with stop_on_signals(cancel):
            result = train_study(
                scenario,
                model_path,
                out,
                params,
                reporter,
                cancel,
                conditions=args.conditions,
                replicates=args.replicates,
                keep_checkpoints=bool(args.keep_checkpoints),
            )
    except KeyboardInterrupt:
        reporter._stop_bar()
        reporter.summary()
        console.print(
            f"interrupted; the last checkpoint is kept in {out}. Resume with: "
            f"{resume_command(args, out)}",
            highlight=False,
            markup=False,
        )
        return 130
    reporter.summary()
    if not result.complete:
        console.print(
            f"interrupted; checkpoint saved in {out}. Resume with: {resume_command(args, out)}",
            highlight=False,
            markup=False,
        )
        print(out)
        return 130
    print(out)
    return 0
