"""The command-line entry point: parse arguments, call the core, print.

User errors (PersonaError) are printed as one clear message without a traceback and
exit with status 2. `persona-tui` with no command opens the TUI.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from persona_tui import __version__
from persona_tui.backend_names import AUTO, BACKEND_CHOICES
from persona_tui.cli.options import add_model_options, add_repack_option, csv_list
from persona_tui.errors import PersonaError, ScenarioError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="persona-tui",
        description="Offline workbench for persona role-play studies of language models. "
        "Run without a command to open the app.",
    )
    parser.add_argument("--version", action="version", version=f"persona-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a scenario headless and save a session")
    run.add_argument("scenario", nargs="?", help="a scenario file or a built-in/user scenario id")
    add_model_options(run)
    run.add_argument("--samples", type=int, help="samples per condition × probe")
    run.add_argument("--seed", type=int, help="scenario seed (each trial's seed derives from it)")
    run.add_argument("--max-tokens", type=int, help="maximum tokens per response")
    run.add_argument("--temperature", type=float, help="sampling temperature")
    run.add_argument("--conditions", type=csv_list, help="only these condition ids (a,b,...)")
    run.add_argument("--probes", type=csv_list, help="only these probe ids (x,y,...)")
    run.add_argument(
        "--out", type=Path, help="session file to write (default: the sessions folder)"
    )
    run.add_argument(
        "--resume",
        type=Path,
        metavar="SESSION",
        help="continue an interrupted session, with its own plan and model (and its choice "
        "to sample and to score, unless --sample, --no-score, ... change it)",
    )
    run.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="requests in flight at once (OpenAI-compatible servers only)",
    )
    run.add_argument(
        "--batch",
        type=int,
        metavar="N",
        help="sequences decoded at once (llama.cpp; default: a cell's samples, 1: one by "
        "one); as one ends, the condition's next trial takes its place; recorded in the "
        "session, since results depend on it",
    )
    run.add_argument(
        "--adapters",
        metavar="COND=DIR,...",
        help="a training study's LoRA adapters: CONDITION=DIR for each training condition "
        "(DIR: a condition folder of `persona-tui train`, or its adapter.gguf; default: "
        "train's output folder for this scenario and model)",
    )
    run.add_argument(
        "--score",
        action=argparse.BooleanOptionalAction,
        help="--no-score skips scoring the probes' answer options (likelihood probes); "
        "recorded in the session, so a resume keeps it (--score turns it back on)",
    )
    run.add_argument(
        "--sample",
        action=argparse.BooleanOptionalAction,
        help="--no-sample skips sampling: only score the probes' answer options; recorded "
        "in the session, so a resume keeps it (--sample turns it back on)",
    )
    run.add_argument(
        "--vectors",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder `persona-tui vectors` wrote (repeatable): trait vectors for steered "
        "conditions and projections, looked in before the scenario's own",
    )
    run.add_argument(
        "--projections",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-projections skips measuring the scenario's traits (persona vectors) "
        "in each trial and option cell",
    )
    run.set_defaults(func=_cmd_run)

    validate = sub.add_parser("validate", help="check scenario files; exit 2 if any is invalid")
    validate.add_argument("files", nargs="+", type=Path)
    validate.set_defaults(func=_cmd_validate)

    scenarios = sub.add_parser("scenarios", help="list built-in and user scenarios")
    scenarios.set_defaults(func=_cmd_scenarios)

    models = sub.add_parser("models", help="list the demo model, config aliases and local GGUFs")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=_cmd_models)

    sessions = sub.add_parser("sessions", help="list saved sessions")
    sessions.add_argument("--json", action="store_true", help="print JSON")
    sessions.add_argument(
        "--record",
        metavar="SESSION",
        help="print a session's reproducibility record (model, scenario, sampling, seeds), as "
        "the app shows it with `i`; SESSION is a session file or id",
    )
    sessions.set_defaults(func=_cmd_sessions)

    tui = sub.add_parser("tui", help="open the app (optionally straight on a run)")
    tui.add_argument("--scenario", help="scenario file or id to run")
    tui.add_argument("--model", "-m", help="model to run it on")
    tui.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default=AUTO,
        help="engine to run the model with (default: picked from what the model is)",
    )
    tui.set_defaults(func=_cmd_tui)

    annotate = sub.add_parser("annotate", help="open the app on a session's annotation screen")
    annotate.add_argument("session", type=Path)
    annotate.add_argument(
        "--blind", action="store_true", help="hide conditions and shuffle trials (seed recorded)"
    )
    annotate.set_defaults(func=_cmd_annotate)

    doctor = sub.add_parser(
        "doctor",
        help="check the install, this CPU and llama.cpp build, and a short generation "
        "(run in a child process, so a native crash is reported, not fatal)",
    )
    doctor.add_argument(
        "--model", type=Path, help="a GGUF file to try (default: the bundled demo model)"
    )
    add_repack_option(doctor)
    doctor.add_argument("--threads", type=int, help="CPU threads for llama.cpp")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(func=_cmd_doctor)

    from persona_tui.cli.analysis import add_analysis_commands
    from persona_tui.cli.study import add_study_command
    from persona_tui.cli.train import add_train_command
    from persona_tui.cli.vectors import add_vectors_command

    add_analysis_commands(sub)
    add_train_command(sub)
    add_study_command(sub)
    add_vectors_command(sub)
    return parser


# Commands -------------------------------------------------------------------------------


def _cmd_validate(args: argparse.Namespace) -> int:
    from persona_tui.scenario.parse import load_scenario

    bad = 0
    for file in args.files:
        try:
            scenario = load_scenario(file)
        except ScenarioError as error:
            bad += 1
            for problem in error.problems:
                print(problem)
        else:
            print(
                f"{file}: ok ({scenario.id}: {len(scenario.conditions)} conditions, "
                f"{len(scenario.probes)} probes)",
                file=sys.stderr,
            )
    return 2 if bad else 0


def _cmd_scenarios(args: argparse.Namespace) -> int:
    from persona_tui.scenario.catalog import list_scenarios

    for entry in list_scenarios():
        s = entry.scenario
        if isinstance(s, ScenarioError):
            print(f"{entry.path.stem:28} {entry.origin:9} INVALID: {s.problems[0]}")
            continue
        print(
            f"{s.id:28} {entry.origin:9} {len(s.conditions)} conditions × "
            f"{len(s.probes)} probes  {s.title}"
        )
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from persona_tui.models.config import load_config
    from persona_tui.models.discovery import discover_models

    refs = discover_models(load_config().models)
    if args.json:
        print(
            json.dumps(
                [
                    {"name": r.name, "path": r.path, "backend": r.backend, "source": r.source}
                    for r in refs
                ],
                indent=2,
            )
        )
    else:
        for r in refs:
            print(f"{r.name:32} {r.source:16} {r.backend:10} {r.path}")
    return 0


def _cmd_sessions(args: argparse.Namespace) -> int:
    from persona_tui import paths
    from persona_tui.session.index import list_sessions

    if args.record is not None:
        return _print_record(args.record, as_json=args.json)
    summaries = list_sessions(newest_first=False)
    if args.json:
        print(json.dumps([s.as_dict() for s in summaries], indent=2))
        return 0
    if not summaries:
        print(f"no sessions in {paths.sessions_dir()}", file=sys.stderr)
    for s in summaries:
        if s.error:
            print(f"{s.path}: unreadable: {s.error}")
        else:
            print(
                f"{s.id:44} {s.status:11} {s.done:>4}/{s.planned:<4} "
                f"annotated {s.annotated:>4}  {s.model}  {s.path}"
            )
    return 0


def _print_record(ref: str, *, as_json: bool) -> int:
    from persona_tui.session.index import (
        reproducibility_data,
        reproducibility_record,
        resolve_session,
    )
    from persona_tui.session.store import load_session

    session = load_session(resolve_session(ref))
    if as_json:
        print(json.dumps(reproducibility_data(session), indent=2))
    else:
        print(reproducibility_record(session))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from persona_tui.cli.doctor import cmd_doctor

    return cmd_doctor(args)


def _cmd_tui(args: argparse.Namespace) -> int:
    from persona_tui.ui.app import run_app

    return run_app(scenario=args.scenario, model=args.model, backend=args.backend)


def _cmd_annotate(args: argparse.Namespace) -> int:
    from persona_tui.ui.app import run_app

    return run_app(annotate=args.session, blind=args.blind)


def _cmd_run(args: argparse.Namespace) -> int:
    from persona_tui.cli.run import run_headless

    return run_headless(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Handler | None = getattr(args, "func", None)
    try:
        if func is None:
            from persona_tui.ui.app import run_app

            return run_app()
        return func(args)
    except PersonaError as error:
        print(f"persona-tui: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("persona-tui: interrupted", file=sys.stderr)
        return 130
