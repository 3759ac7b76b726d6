"""Every bench still runs (briefly, on the tiny GGUF where it takes a model): a bench that
only runs by hand rots. These check that each prints its figures, not what they are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

pytestmark = pytest.mark.slow


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_bench_autosave(tmp_path: Path) -> None:
    out = _run(
        "bench_autosave.py",
        "--trials",
        "40",
        "--naive-saves",
        "2",
        "--annotations",
        "2",
        "--dir",
        str(tmp_path),
    )
    assert "speed-up at 40 trials" in out


def test_bench_analysis() -> None:
    assert "load_session" in _run("bench_analysis.py", "--trials", "200", "--repeat", "1")


def test_bench_overhead(tiny_gguf: Path) -> None:
    out = _run("bench_overhead.py", "--model", str(tiny_gguf), "--rounds", "1")
    assert "ratio" in out


def test_bench_prefix(tiny_gguf: Path) -> None:
    assert "tokens" in _run("bench_prefix.py", "--model", str(tiny_gguf), "--max-tokens", "4")


def test_bench_parity() -> None:
    pytest.importorskip("mlx_lm")
    assert "identical" in _run("bench_parity.py", "--tokens", "8", "--seeds", "0")


def test_bench_threads(tiny_gguf: Path) -> None:
    out = _run(
        "bench_threads.py",
        "--model",
        str(tiny_gguf),
        "--rounds",
        "1",
        "--threads",
        "1,auto",
        "--hogs",
        "0,1",
        "--tokens",
        "4",
    )
    assert "| 1 | auto (" in out


def test_bench_tui(tiny_gguf: Path) -> None:
    out = _run(
        "bench_tui.py",
        "--model",
        str(tiny_gguf),
        "--rounds",
        "1",
        "--max-tokens",
        "4",
        "--probes",
        "wish",
    )
    assert "ratio" in out or "tok/s" in out


def test_bench_options(tiny_gguf: Path) -> None:
    out = _run(
        "bench_options.py",
        "--model",
        str(tiny_gguf),
        "--probes",
        "2",
        "--rounds",
        "1",
        "--threads",
        "1",
    )
    assert "options/s" in out and "ratio" in out and "layouts apart" in out


def test_bench_projection(tiny_gguf: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gguf")
    out = _run("bench_projection.py", "--model", str(tiny_gguf), "--rows", "8", "--repeat", "1")
    assert "llama.cpp projection" in out and "worst" in out


def test_bench_train(tiny_gguf: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    out = _run(
        "bench_train.py",
        "--model",
        str(tiny_gguf),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--prompt",
        "12",
        "--completion",
        "8",
        "--rounds",
        "1",
        "--threads",
        "1",
        "--home",
        str(tmp_path),
    )
    assert "tokens/s" in out and "ratio to full-fp32" in out


def test_bench_mlx_batch() -> None:
    pytest.importorskip("mlx_lm")
    out = _run(
        "bench_mlx_batch.py",
        "--shape",
        "tiny",
        "--samples",
        "1,2",
        "--tokens",
        "4",
        "--rounds",
        "1",
    )
    assert "ratio" in out and "identical" in out


def test_bench_batch(tiny_gguf: Path) -> None:
    out = _run(
        "bench_batch.py",
        *("--model", str(tiny_gguf), "--samples", "1,3", "--rounds", "1", "--threads", "1"),
        *("--probes", "wish", "--max-tokens", "8"),
    )
    assert "batched/one-by-one" in out and "memory: peak RSS" in out


def test_bench_decode_rows(tiny_gguf: Path) -> None:
    out = _run(
        "bench_decode_rows.py",
        *("--model", str(tiny_gguf), "--threads", "1", "--options", "1,2", "--repeat", "1"),
    )
    assert "per row" in out and "generation steps" in out


def test_bench_judge(tiny_gguf: Path) -> None:
    out = _run(
        "bench_judge.py",
        *("--model", str(tiny_gguf), "--threads", "1", "--rounds", "1", "--sequences", "2"),
    )
    assert "answers/s" in out and "parallel sequences" in out


def test_bench_sampling(tiny_gguf: Path) -> None:
    out = _run(
        "bench_sampling.py",
        *("--model", str(tiny_gguf), "--threads", "1", "--rounds", "2", "--tokens", "20"),
    )
    assert "ms a token" in out and "same tokens in 2/2 rounds" in out
