"""Command-line options more than one command takes: the model, its engine and threads,
llama.cpp's repacking, comma-separated lists."""

from __future__ import annotations

import argparse

from persona_tui.backend_names import AUTO, BACKEND_CHOICES


def csv_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        "-m",
        help="'demo', a config alias, or a path to a GGUF file (default: the config's "
        "default_model, else the bundled demo model)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads for llama.cpp")
    add_repack_option(parser)
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default=AUTO,
        help="engine to run the model with (default: picked from what the model is)",
    )


def add_repack_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repack",
        choices=("auto", "on", "off"),
        help="llama.cpp weight repacking (extra buffer types, incl. AMX): auto turns it off "
        "on AMX builds, where it crashes (default: the config's repack, else auto)",
    )
