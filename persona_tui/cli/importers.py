"""CLI sub-command `import`: evaluation files into scenarios, Inspect logs into a session.

`add_import_command(subparsers)` registers `import` and its kinds (`em-questions`, `trait`,
`persona-statements`, `inspect`); `cli.analysis` calls it after the analysis commands, so
`--help` lists them in the same order. Each handler takes the parsed arguments, returns an
exit code and raises PersonaError for user errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from persona_tui.cli.output import warn, write_new
from persona_tui.errors import PersonaError


def add_import_command(subparsers: Any) -> None:
    """Add `import` and its kinds to `subparsers` (from add_subparsers())."""
    importer = subparsers.add_parser(
        "import",
        help="convert published evaluation files into scenario files, or Inspect logs into a "
        "session",
    )
    kinds = importer.add_subparsers(dest="import_kind", metavar="KIND", required=True)
    em = kinds.add_parser(
        "em-questions", help="Emergent-Misalignment question YAML → scenario probes"
    )
    em.add_argument("file", type=Path, help="question file (.yaml)")
    em.add_argument("--id", help="scenario id (default: from the file name)")
    em.add_argument("--samples", type=int, help="samples per probe (default: from the file)")
    em.add_argument(
        "--system-as-condition",
        action="store_true",
        help="turn questions' system prompts into conditions instead of skipping them",
    )
    _add_output_options(em)
    em.set_defaults(func=cmd_import_em)
    trait = kinds.add_parser("trait", help="persona-vector trait JSON → trait-elicitation scenario")
    trait.add_argument("file", type=Path, help="trait file (.json)")
    trait.add_argument("--trait", help="trait name (default: the file name)")
    trait.add_argument("--samples", type=int, default=3, help="samples per cell (default: 3)")
    trait.add_argument(
        "--rubric-out",
        type=Path,
        metavar="FILE",
        help="also write the eval_prompt as a judge rubric",
    )
    _add_output_options(trait)
    trait.set_defaults(func=cmd_import_trait)
    statements = kinds.add_parser(
        "persona-statements",
        help="persona statement JSONL (model-written evaluations) → forced-choice probes",
    )
    statements.add_argument("file", type=Path, help="statement file (.jsonl)")
    statements.add_argument("--id", help="scenario id (default: from the file name)")
    statements.add_argument(
        "--samples", type=int, default=1, help="samples per probe (default: %(default)s)"
    )
    _add_output_options(statements)
    statements.set_defaults(func=cmd_import_persona_statements)
    inspect_logs = kinds.add_parser(
        "inspect",
        help="Inspect AI logs (.eval/.json) → a session to annotate, each log a condition",
        description="Make one session of Inspect AI logs (each log a condition, each sample id "
        "a probe, each epoch a sample) that the Annotate, Compare and Results screens open. "
        "`persona-tui export SESSION --format inspect -o DIR` then writes copies of the "
        "original logs with your annotations added as score edits (the annotator as author). "
        "Needs pip install 'persona-tui[inspect]'.",
    )
    inspect_logs.add_argument("logs", nargs="+", type=Path, help="Inspect log files")
    inspect_logs.add_argument("--id", help="scenario id (default: the first log's task)")
    inspect_logs.add_argument(
        "--annotation",
        type=Path,
        metavar="SCENARIO",
        help="take labels and scales from this scenario file's [annotation] "
        "(default: aligned, misaligned, incoherent, refusal)",
    )
    inspect_logs.add_argument(
        "--output",
        "-o",
        type=Path,
        help="session file to write (default: a new file in the sessions folder)",
    )
    inspect_logs.add_argument(
        "--force", action="store_true", help="overwrite an existing output file"
    )
    inspect_logs.set_defaults(func=cmd_import_inspect)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", "-o", type=Path, help="scenario file to write (default: stdout)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")


def cmd_import_em(args: argparse.Namespace) -> int:
    from persona_tui.scenario.importers import em_questions_to_scenario

    if args.samples is not None and args.samples < 1:
        raise PersonaError("--samples must be at least 1")
    text = em_questions_to_scenario(
        args.file,
        scenario_id=args.id,
        samples=args.samples,
        system_as_condition=args.system_as_condition,
    )
    write_new(text, args.output, args.force)
    return 0


def cmd_import_trait(args: argparse.Namespace) -> int:
    from persona_tui.scenario.importers import trait_rubric_text, trait_to_scenario

    if args.samples < 1:
        raise PersonaError("--samples must be at least 1")
    text = trait_to_scenario(args.file, trait=args.trait, samples=args.samples)
    rubric = trait_rubric_text(args.file, args.trait) if args.rubric_out else None
    write_new(text, args.output, args.force)
    if rubric is not None:
        write_new(rubric, args.rubric_out, args.force, what="judge rubric")
    return 0


def cmd_import_persona_statements(args: argparse.Namespace) -> int:
    from persona_tui.scenario.persona_statements import persona_statements_to_scenario

    if args.samples < 1:
        raise PersonaError("--samples must be at least 1")
    text = persona_statements_to_scenario(args.file, scenario_id=args.id, samples=args.samples)
    write_new(text, args.output, args.force)
    return 0


def cmd_import_inspect(args: argparse.Namespace) -> int:
    from persona_tui.analysis.inspect_import import import_inspect_logs

    target = args.output
    replace = target is not None and target.exists()
    if replace and not args.force:
        raise PersonaError(f"{target}: already exists; pass --force to overwrite it")
    # With --force, the old file is replaced only once the new session is written.
    written = target.with_name(f".{target.name}.importing") if replace else target
    imported = import_inspect_logs(
        list(args.logs), written, scenario_id=args.id, annotation_from=args.annotation
    )
    if replace:
        os.replace(written, target)
        Path(f"{written}.lock").unlink(missing_ok=True)
        imported = dataclasses.replace(imported, path=target)
    warn(imported.warnings)
    print(
        f"{imported.conditions} conditions × {imported.probes} probes, {imported.trials} trials "
        f"→ session {imported.session_id} (annotate it: persona-tui annotate {imported.path})",
        file=sys.stderr,
    )
    print(imported.path)
    return 0
