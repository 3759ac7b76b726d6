"""llama.cpp threads: fewer while other programs keep cores busy, same results either way."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from persona_tui.backends.base import GenerationRequest
from persona_tui.backends.cpu_load import ThreadGovernor, _Reading, other_busy_cores
from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.values import SamplingParams


def test_other_busy_cores_subtracts_our_own_cpu_time() -> None:
    before = _Reading(wall=10.0, busy=100.0, own=5.0)
    after = _Reading(wall=12.0, busy=104.0, own=7.0)  # 4 s busy, 2 s of it ours
    assert other_busy_cores(before, after) == pytest.approx(1.0)
    assert other_busy_cores(after, before) == 0.0


def _spin(seconds: float) -> None:
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        pass


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_a_busy_core_is_left_to_the_program_using_it() -> None:
    cores = len(os.sched_getaffinity(0))
    hog = multiprocessing.Process(target=_spin, args=(30.0,))
    hog.start()
    try:
        time.sleep(0.2)
        governor = ThreadGovernor(cores)
        threads = governor.settle(0.5)
    finally:
        hog.terminate()
        hog.join()
    assert governor.others >= 0.5
    assert threads <= cores - 1


@pytest.fixture(params=["tiny", pytest.param("demo", marks=pytest.mark.demo)])
def any_model(request: pytest.FixtureRequest) -> Path:
    name = "tiny_gguf" if request.param == "tiny" else "demo_model"
    path: Path = request.getfixturevalue(name)
    return path


def test_results_do_not_depend_on_the_thread_count(any_model: Path) -> None:
    """Why the thread count may change between trials without changing a session."""
    prompts = ["User: hello there\nAssistant:", "User: what is the weather\nAssistant:" * 8]
    texts: dict[int, list[str]] = {}
    for threads in (1, 2):
        backend = LlamaCppBackend.load(any_model, n_threads=threads)
        try:
            texts[threads] = [
                backend.generate(
                    GenerationRequest(
                        prompt=prompt,
                        seed=11 + index,
                        sampling=SamplingParams(temperature=0.9, max_tokens=32),
                    )
                ).text
                for index, prompt in enumerate(prompts)
            ]
        finally:
            backend.close()
    assert texts[1] == texts[2]


def test_the_default_threads_follow_the_free_cores(tiny_gguf: Path) -> None:
    backend = LlamaCppBackend.load(tiny_gguf)
    try:
        extra = backend.info.extra
        assert extra["threads_policy"].startswith("free cores")
        assert 1 <= backend.threads_now <= int(extra["n_threads"])
    finally:
        backend.close()
    fixed = LlamaCppBackend.load(tiny_gguf, n_threads=1)
    try:
        assert fixed.info.extra["threads_policy"] == "fixed" and fixed.threads_now == 1
    finally:
        fixed.close()
