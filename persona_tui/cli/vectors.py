"""`persona-tui vectors`: extract a scenario's trait directions, and the progress of the
passes that read activations (extraction, projections) on stderr.

The control-vector GGUF and its record go to the scenario's folder for the model in the
data folder (where runs look), or to `-o DIR`; the per-layer separation is printed as a
table and drawn as a figure beside the files when matplotlib is installed (the
`analysis` extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from persona_tui.vectors.record import VectorRecord


def add_vectors_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from persona_tui.cli.options import add_model_options, csv_list

    vectors = sub.add_parser(
        "vectors",
        help="extract a scenario's trait directions (persona vectors) as control-vector GGUFs",
    )
    vectors.add_argument("scenario", help="a scenario file or id that declares [[traits]]")
    add_model_options(vectors)
    vectors.add_argument(
        "-o",
        "--out",
        type=Path,
        help="folder to write <trait>.gguf and its record to (default: the scenario's folder "
        "for this model in the data folder, where runs look for them)",
    )
    vectors.add_argument("--traits", type=csv_list, help="only these trait ids (a,b,...)")
    vectors.add_argument("--seed", type=int, help="seed of the answers (default: the scenario's)")
    vectors.add_argument(
        "--random-control",
        action="store_true",
        help="also write <trait>-random: a random direction with the trait's norm at every "
        "layer, to steer with as a control (what it moves too is not the trait's doing)",
    )
    vectors.set_defaults(func=cmd_vectors)


def cmd_vectors(args: argparse.Namespace) -> int:
    from persona_tui.cli.progress import VectorsReporter, cancel_on_signals
    from persona_tui.errors import PersonaError
    from persona_tui.models.config import load_config
    from persona_tui.run.extract import VectorsRequest, extract_vectors
    from persona_tui.run.runner import RunControl
    from persona_tui.scenario.catalog import resolve_scenario
    from persona_tui.scenario.parse import load_scenario
    from persona_tui.vectors.record import read_record
    from persona_tui.vectors.store import load_trait, save_random_control

    console = Console(stderr=True)
    request = VectorsRequest(
        scenario=load_scenario(resolve_scenario(args.scenario)),
        model=args.model,
        config=load_config(),
        backend=args.backend,
        threads=args.threads,
        repack=args.repack,
        traits=tuple(args.traits or ()),
        out=args.out,
        seed=args.seed,
    )
    control = RunControl()
    try:
        with cancel_on_signals(control):
            written = extract_vectors(request, VectorsReporter(console), control.cancelled)
    except PersonaError as error:
        if not control.cancelled.is_set():
            raise
        console.print(str(error), highlight=False, markup=False, soft_wrap=True)
        return 130
    controls = []
    if args.random_control:
        for path in written:
            random = save_random_control(load_trait(path.parent, path.stem), path.parent)
            controls.append(random.gguf_path)
    for path in written:
        record = read_record(path.with_suffix(".toml"))
        _print_layers(record)
        figure = _separation_figure(record, path.with_suffix(".separation.png"))
        if figure is not None:
            console.print(
                f"separation figure: {figure}", highlight=False, markup=False, soft_wrap=True
            )
        print(path)
    for path in controls:
        print(path)
    return 0


def _print_layers(record: VectorRecord) -> None:
    """The per-layer separation table on stdout, the layer runs use marked."""
    print(f"trait {record.trait}: held-out separation per layer")
    print("layer    AUC    gap    norm")
    for stats in record.per_layer:
        mark = "  <- recommended" if stats.layer == record.recommended_layer else ""
        print(
            f"{stats.layer:5d}  {stats.separation:5.2f}  {stats.gap:5.2f}  {stats.norm:7.1f}{mark}"
        )


def _separation_figure(record: VectorRecord, path: Path) -> Path | None:
    """The separation figure beside the vectors (None without matplotlib)."""
    try:
        from persona_tui.analysis.vector_plots import separation_plot

        return separation_plot(record, path)
    except ImportError:  # the analysis extra is missing
        return None
