"""Persona vectors: extraction time, the projection pass against sampling, steering's cost.

On the demo model, in one process:

(a) extraction of the built-in `bully-school-play`'s `malice` trait (answers generated under
    both instructions, then measured at every layer): its wall time (target: under a minute
    on 2 cores);
(b) a run of `bully-school-play` (its first `--probes` probes, options not scored): the
    sampling pass, then the projection pass on the same session; the pass's time as a
    share of sampling's (target: at most 10%);
(c) batched generation of the same trials' prompts with a control vector applied at the
    trait's layer against none, alternating rounds, medians: tokens per second (target:
    steering costs at most 5%). The vector is the malice direction times 0, so both sides
    decode exactly the same tokens (any other scale changes the texts, and with them the
    lengths the speed depends on) while llama.cpp adds it at that layer in every decode.

    python bench/bench_vectors.py [--model PATH] [--probes 24] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench_machine import machine_summary

from persona_tui.backends.base import BatchDone, GenerationRequest
from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.models.discovery import demo_model_path
from persona_tui.run.extract import extract_traits
from persona_tui.run.lifecycle import create_session
from persona_tui.run.plan import RunOptions
from persona_tui.run.projections import measure_projections
from persona_tui.run.runner import Runner
from persona_tui.run.vectors import resolve_vectors
from persona_tui.scenario.catalog import resolve_scenario
from persona_tui.scenario.parse import load_scenario
from persona_tui.vectors.store import load_trait


def quiet(_event: object) -> None:
    pass


def generate(backend: LlamaCppBackend, requests: list[GenerationRequest]) -> tuple[float, int]:
    clock = time.perf_counter()
    tokens = 0
    for event in backend.generate_batch(requests, batch=len(requests)):
        if isinstance(event, BatchDone):
            tokens += event.result.completion_tokens
    return time.perf_counter() - clock, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--probes", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model = args.model or demo_model_path()
    scenario = load_scenario(resolve_scenario("bully-school-play"))
    probes = [p.id for p in scenario.probes[: args.probes]]
    backend = LlamaCppBackend.load(model, n_threads=args.threads)
    print(machine_summary())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clock = time.perf_counter()
        extract_traits(scenario, backend, list(scenario.traits[:1]), folder / "v", quiet)
        extraction = time.perf_counter() - clock
        trait = scenario.traits[0].id
        print(f"(a) extraction of {trait}: {extraction:.1f} s (target < 60 s)")

        options = RunOptions(probes=probes, score=False)
        traits, steering = resolve_vectors(scenario, backend, [folder / "v"], str(model), quiet)
        store = create_session(
            scenario, backend, options, folder / "s.toml", traits=traits, steering=steering
        )
        with store:
            clock = time.perf_counter()
            Runner(scenario, backend, store).run(quiet)
            sampling = time.perf_counter() - clock
            clock = time.perf_counter()
            measure_projections(scenario, backend, store, quiet)
            projecting = time.perf_counter() - clock
            prompts = [t.prompt for t in store.session.trials]
            n = len(prompts)
        print(
            f"(b) {n} trials: sampling {sampling:.1f} s, projections {projecting:.2f} s: "
            f"{projecting / sampling:.1%} of sampling (target <= 10%)"
        )

        record = traits[trait]
        vector = load_trait(folder / "v", trait).steering_vector(record.layer, 0.0)
        sampling_params = store.session.header.sampling
        requests = [
            GenerationRequest(p, seed=i, sampling=sampling_params) for i, p in enumerate(prompts)
        ][:16]
        plain, steered = [], []
        for _ in range(args.rounds):
            for steer, into in ((None, plain), ({record.layer: vector}, steered)):
                backend.use_steering(steer)
                seconds, tokens = generate(backend, requests)
                into.append(tokens / seconds)
        backend.use_steering(None)
        a, b = statistics.median(plain), statistics.median(steered)
        print(
            f"(c) batched generation, {len(requests)} sequences: {a:.1f} tok/s plain, "
            f"{b:.1f} tok/s steered (layer {record.layer}, scale 0): cost {1 - b / a:+.1%} "
            f"(target <= 5%; rounds plain {[round(x, 1) for x in plain]}, steered "
            f"{[round(x, 1) for x in steered]})"
        )
    backend.close()


if __name__ == "__main__":
    main()
