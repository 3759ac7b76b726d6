"""`persona-tui study SCENARIO --model M`: a training study in one command.

On a GGUF the adapters are trained with torch + peft and probed with llama.cpp; on an MLX
model folder, trained and probed with mlx-lm. Three phases, each with its progress on
stderr (four when the scenario declares traits: first its training data is screened along
them, run/screening.py, into DIR/screening.csv): (1) train the adapters (`train`: finished
ones are skipped, an interrupted one resumes from its checkpoint), (2) probe them, every
probe under each adapter and the untouched base (sampled trials, then the likelihood
probes, then the trait projections), saved as DIR/session-N-runs.toml, and (3) print the
report (`persona-tui report`) on stdout. Run it again after an interruption: it carries on
where it stopped (an existing session is resumed; it refuses adapters that changed since,
see `run --resume`).
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any


def session_file(replicates: int, step: int | None = None) -> str:
    """The study's session in its folder, one per number of training runs probed (a study
    run again with --replicates 5 after 3 probes the 5 in a session of its own; the first
    3 runs' adapters are reused, not trained again), and one per checkpoint step probed."""
    at = "" if step is None else f"-step-{step}"
    return f"session-{replicates}-run{'s' * (replicates != 1)}{at}.toml"


def add_study_command(subparsers: Any) -> None:
    """Add `study` to `subparsers` (from add_subparsers())."""
    from persona_tui.cli.train import add_training_options

    study = subparsers.add_parser(
        "study",
        help="train a training study's adapters, probe them side by side with the base "
        "model (sampled and likelihood probes) and print the report (needs the train "
        "extra; the mlx extra on an MLX folder)",
    )
    study.add_argument("scenario", help="a training study: a scenario file or id")
    study.add_argument(
        "--model",
        "-m",
        help="'demo', a config alias, a GGUF file (torch + peft, probed with llama.cpp) or an "
        "MLX model folder (mlx-lm, probed with MLX) (default: the config's)",
    )
    study.add_argument(
        "-o",
        "--out",
        type=Path,
        help="study folder: the adapters in DIR/<condition>/replicate-<k>/, the session in "
        f"DIR/{session_file(3)} for 3 runs per condition (default: train's output folder, "
        "adapters/SCENARIO--MODEL)",
    )
    add_training_options(study)
    study.add_argument("--samples", type=int, help="samples per condition × probe")
    study.add_argument("--max-tokens", type=int, help="maximum tokens per sampled response")
    study.add_argument("--probes", type=lambda v: [p for p in v.split(",") if p], help="a,b,...")
    study.add_argument(
        "--sample",
        action=argparse.BooleanOptionalAction,
        help="--no-sample skips sampling: only the likelihood probes (recorded in the "
        "session: carrying on keeps it, --sample turns it back on)",
    )
    study.add_argument(
        "--score",
        action=argparse.BooleanOptionalAction,
        help="--no-score skips the likelihood probes (recorded in the session: carrying on "
        "keeps it, --score turns it back on)",
    )
    study.add_argument(
        "--probe-checkpoints",
        action="store_true",
        help="keep every checkpoint's adapter and score the likelihood probes at each (a "
        "session per step, DIR/session-N-runs-step-S.toml): the report adds log-odds "
        "against the training step, DIR/trajectory.png",
    )
    study.set_defaults(func=cmd_study)


def _phase(console: Any, number: int, title: str, total: int) -> None:
    console.rule(f"{number}/{total} {title}", style="bold")


def cmd_study(args: argparse.Namespace) -> int:
    """Train, probe, report; exit 0 when done, 130 when interrupted (run it again)."""
    from rich.console import Console

    from persona_tui.backends.detect import is_mlx_model
    from persona_tui.cli.train import (
        TrainReporter,
        quiet_libraries,
        resume_command,
        stop_on_signals,
        training_params,
    )
    from persona_tui.errors import PersonaError
    from persona_tui.models.config import load_config
    from persona_tui.run.adapters import default_output
    from persona_tui.run.plan import RunOptions, run_choices
    from persona_tui.scenario.catalog import resolve_scenario
    from persona_tui.scenario.parse import load_scenario
    from persona_tui.training.deps import require_training
    from persona_tui.training.locate import training_model_path
    from persona_tui.training.study import checkpoint_steps, train_study

    run_choices(RunOptions(sample=args.sample, score=args.score))  # refused before training
    params = training_params(args)
    scenario = load_scenario(resolve_scenario(args.scenario))
    if scenario.training is None:
        raise PersonaError(
            f"scenario {scenario.id!r} is not a training study (it has no [training] table); "
            "`persona-tui run` it instead"
        )
    _check_probe_options(args, scenario)
    model_path = training_model_path(args.model, load_config())
    if not is_mlx_model(model_path):  # a GGUF: torch + peft (an MLX folder needs only mlx-lm)
        require_training()  # the one-line install hint before any slow work
    quiet_libraries()
    out = args.out or default_output(scenario.id, model_path)
    console = Console(stderr=True)

    phases = 4 if scenario.traits else 3
    first = phases - 3  # the training phase's number
    if scenario.traits:
        _phase(console, 1, "screening the training data along the scenario's traits", phases)
        _screen(scenario, model_path, out, console)
    _phase(
        console, first + 1, f"training the adapters of {scenario.id} on {model_path.name}", phases
    )
    reporter = TrainReporter(console)
    cancel = threading.Event()
    try:
        with stop_on_signals(cancel):
            trained = train_study(
                scenario,
                model_path,
                out,
                params,
                reporter,
                cancel,
                replicates=args.replicates,
                keep_checkpoints=bool(args.keep_checkpoints or args.probe_checkpoints),
            )
    except KeyboardInterrupt:
        reporter._stop_bar()
        trained = None
    reporter.summary()
    if trained is None or not trained.complete:
        console.print(
            f"interrupted while training; the checkpoint is kept in {out}. Carry on with: "
            f"{resume_command(args, out, 'study')}",
            highlight=False,
            markup=False,
        )
        return 130
    # Each condition's folder: the run probes every replicate's adapter in it.
    adapters = {r.condition: r.folder.parent for r in trained.results if r.adapter is not None}

    _phase(console, first + 2, "probing the adapters and the base model", phases)
    console.print(probing_work(scenario, args, trained.replicates, out), highlight=False)
    # The finished adapters, then (--probe-checkpoints) each kept checkpoint's.
    steps: list[int | None] = [None]
    if args.probe_checkpoints and args.score is not False:
        steps += checkpoint_steps(max(r.total_steps for r in trained.results), params)
    sessions: list[Path] = []
    for step in steps:
        if step is not None:
            console.print(f"the checkpoints of step {step}", highlight=False)
        path = out / session_file(trained.replicates, step)
        session, status = _probe(
            args, scenario, model_path, path, adapters, trained.replicates, console, step
        )
        if status != "complete":
            console.print(
                f"probing {status}; the session is saved in {session}. Carry on with: "
                f"{resume_command(args, out, 'study')}",
                highlight=False,
                markup=False,
            )
            return 130 if status == "interrupted" else 1
        sessions.append(session)
    session = sessions[0]

    _phase(console, first + 3, "report", phases)
    from persona_tui.cli.analysis import add_analysis_commands, cmd_report

    # `report`'s own defaults, from its own parser (not the whole CLI's: main imports study).
    parser = argparse.ArgumentParser(prog="persona-tui")
    add_analysis_commands(parser.add_subparsers())
    code = cmd_report(parser.parse_args(["report", str(session)]))
    if len(sessions) > 1:
        _print_trajectory(sessions, out)
    console.print(f"session: {session}", highlight=False, markup=False)
    return code


def _screen(scenario: Any, model_path: Path, out: Path, console: Any) -> None:
    """Phase 0: each framing's training data scored along each trait before training
    (run/screening.py), printed, and written to out/screening.csv."""
    from persona_tui.cli.progress import VectorsReporter
    from persona_tui.models.config import load_config
    from persona_tui.run.screening import paired_difference, screen_study

    screen = screen_study(scenario, str(model_path), load_config(), out, VectorsReporter(console))
    framings = [c.id for c in scenario.conditions if c.training is not None]
    print("Data screening (completion minus the base model's own answer, projected on the "
          "trait; 95% bootstrap over examples):")  # fmt: skip
    for item in screen.framings:
        print(
            f"  {item.trait:12s} {item.condition:12s} {item.mean:+8.3f} "
            f"[{item.low:+.3f}, {item.high:+.3f}]  n={item.examples}"
        )
    for trait in screen.traits:
        for i, first in enumerate(framings):
            for second in framings[i + 1 :]:
                paired = paired_difference(screen.examples, first, second, trait)
                if paired is not None:
                    print(
                        f"  {trait:12s} {paired.condition}: {paired.mean:+.3f} "
                        f"[{paired.low:+.3f}, {paired.high:+.3f}] (paired, n={paired.examples})"
                    )
    console.print(f"screening: {screen.csv}", highlight=False, markup=False)


def _print_trajectory(sessions: list[Path], out: Path) -> None:
    """The log-odds by training step (stdout) and its plot, DIR/trajectory.png; then, when
    the study measures traits, each adapter's projection shift by step."""
    from persona_tui.analysis.projection_trajectory import (
        projection_trajectory,
        projection_trajectory_table,
    )
    from persona_tui.analysis.trajectory import (
        save_trajectory_plot,
        training_trajectory,
        trajectory_table,
    )
    from persona_tui.session.read import read_session_file

    loaded = [read_session_file(p) for p in sessions]
    trajectory = training_trajectory(loaded)
    print()
    print(trajectory_table(trajectory))
    plot = save_trajectory_plot(trajectory, out / "trajectory.png")
    print(f"plot: {plot}")
    projections = projection_trajectory(loaded)  # None when the study measures no trait
    if projections is not None:
        print()
        print(projection_trajectory_table(projections))


def _adapter_conditions(scenario: Any) -> list[str]:
    return [c.id for c in scenario.conditions if c.adapter_condition]


def probing_work(scenario: Any, args: argparse.Namespace, replicates: int, out: Path) -> str:
    """What probing will do, and how long it should take at the rate the earlier sessions
    in the study folder scored options on this machine (the option pass shows its own time
    left as it goes)."""
    from persona_tui.run.estimate import option_seconds_per_option

    probes = [p for p in scenario.probes if not args.probes or p.id in args.probes]
    arms = sum(replicates if c.adapter_condition else 1 for c in scenario.conditions)
    options = sum(len(p.options) for p in probes) * arms
    text = f"probing {arms} arms (conditions × training runs) × {len(probes)} probes"
    if args.score is not False and options:
        text += f"; {options:,} answer options to score"
        rate = option_seconds_per_option(out)
        if rate is not None:
            minutes = options * rate / 60
            text += f", about {minutes:.1f} min at this machine's earlier rate"
    samples = args.samples if args.samples is not None else scenario.sampling.samples
    if args.sample is not False:
        text += f"; {arms * len(probes) * samples} trials to sample"
    return text


def _check_probe_options(args: argparse.Namespace, scenario: Any) -> None:
    """The probing options, checked before the (long) training rather than after it."""
    from persona_tui._util.tables import did_you_mean
    from persona_tui.errors import PersonaError

    for name in ("samples", "max_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise PersonaError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    ids = [p.id for p in scenario.probes]
    for probe in args.probes or ():
        if probe not in ids:
            hint = did_you_mean(probe, ids) or f" its probes: {', '.join(ids)}"
            raise PersonaError(f"--probes: {probe!r} is not a probe of {scenario.id!r};{hint}")


def _probe(
    args: argparse.Namespace,
    scenario: Any,
    model_path: Path,
    session_path: Path,
    adapters: dict[str, Path],
    replicates: int,
    console: Any,
    step: int | None = None,
) -> tuple[Path, str]:
    """Sample and score the study into `session_path` (resumed when it exists); the session
    file and "complete", "interrupted" or "failed". With `step`: the likelihood probes of
    each run's checkpoint at that step, in the adapter conditions only."""
    from persona_tui.backends.detect import detect_backend
    from persona_tui.cli.progress import cancel_on_signals
    from persona_tui.cli.run import ProgressReporter
    from persona_tui.models.config import load_config
    from persona_tui.run.finish import finish_run
    from persona_tui.run.lifecycle import RunRequest, open_run
    from persona_tui.run.plan import RunOptions
    from persona_tui.run.runner import RunControl

    resume = session_path.is_file()
    if resume:
        console.print(f"resuming {session_path}", highlight=False, markup=False)
    request = RunRequest(
        config=load_config(),
        scenario=None if resume else scenario,
        resume=session_path if resume else None,
        model=str(model_path),
        # The engine the adapters were trained for: mlx-lm's on an MLX folder, else llama.cpp.
        backend=detect_backend(str(model_path)),
        options=RunOptions(
            samples=args.samples,
            max_tokens=args.max_tokens,
            probes=args.probes,
            sample=args.sample if step is None else False,
            score=args.score if step is None else True,
            conditions=None if step is None else _adapter_conditions(scenario),
        ),
        out=session_path,
        adapters={} if resume else adapters,
        replicates=None if resume else replicates,
        step=None if resume else step,
    )
    reporter = ProgressReporter(console)
    control = RunControl()
    with open_run(request, reporter) as run, cancel_on_signals(control):
        outcome = finish_run(run, reporter, control)
        path = run.store.session.path
    if outcome.cancelled:
        return path, "interrupted"
    return path, "failed" if outcome.failed else outcome.status
