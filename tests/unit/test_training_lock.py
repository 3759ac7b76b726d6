"""The lock on a training output folder: a second training into it stops with a sentence.

flock underneath: a holder killed by SIGKILL leaves no stale lock. No training engine
is needed: the lock is taken before anything is loaded or written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from persona_tui.errors import TrainingError
from persona_tui.scenario.parse import parse_scenario
from persona_tui.training.params import TrainingParams
from persona_tui.training.record import OUTPUT_LOCK, output_folder_lock
from persona_tui.training.study import train_study
from tests.scenario_text import TRAINING_STUDY

HOLD = """
import sys
from pathlib import Path
from persona_tui.training.record import output_folder_lock
with output_folder_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""

PLAIN = 'id = "x"\ntitle = "X"\n[[conditions]]\nid = "a"\nlabel = "A"\n' + (
    '[[probes]]\nid = "p"\ntext = "Hi"\n'
)


def hold_in_subprocess(folder: Path) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_training_into_a_held_folder_names_the_folder_and_the_holder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "adapters"
    scenario = parse_scenario(TRAINING_STUDY, "tiny-finetune.toml")
    mlx_folder = tmp_path / "tiny-mlx"  # a folder: the MLX engine's path
    mlx_folder.mkdir()
    holder = hold_in_subprocess(folder)
    try:
        for model in (tmp_path / "tiny.gguf", mlx_folder):
            with pytest.raises(TrainingError) as caught:
                train_study(scenario, model, folder, TrainingParams(), lambda e: None)
            message = str(caught.value)
            assert f"the training output folder {folder} is in use by another training" in message
            assert f"(pid {holder.pid})" in message
            assert str(folder / OUTPUT_LOCK) in message
        assert sorted(p.name for p in folder.iterdir()) == [OUTPUT_LOCK, OUTPUT_LOCK + ".pid"]
    finally:
        holder.kill()
        holder.wait()


def test_a_sigkilled_holder_leaves_the_folder_usable(tmp_path: Path) -> None:
    folder = tmp_path / "adapters"
    holder = hold_in_subprocess(folder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert holder.returncode == -signal.SIGKILL
    with output_folder_lock(folder):
        pass
    # A training gets past the lock (and stops at its own first check).
    with pytest.raises(TrainingError, match="not a training study"):
        train_study(parse_scenario(PLAIN), tmp_path / "tiny.gguf", folder, TrainingParams())


def test_another_thread_of_the_same_process_and_its_holder_are_refused_too(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "adapters"
    errors: list[str] = []

    def second() -> None:
        try:
            with output_folder_lock(folder):
                pass
        except TrainingError as error:
            errors.append(str(error))

    with output_folder_lock(folder):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
        # A plain lock: its holder cannot enter it twice.
        with (
            pytest.raises(TrainingError, match="in use by another training"),
            output_folder_lock(folder),
        ):
            pass
    assert len(errors) == 1 and "in use by another training" in errors[0]
    with output_folder_lock(folder):  # released
        pass
