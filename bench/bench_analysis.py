"""Benchmark: export and report of a 10,000-trial annotated session (targets: < 2 s each).

Writes a synthetic session (5 conditions × 50 probes × 40 samples, ~600-character
responses, ~1,500-character prompts, one annotation per trial plus a second annotator on
10% of them) and a judge sidecar with two rubrics, then times, each in a fresh process
(so imports and start-up count, as for a user), once parsing the files (`--no-cache`, as
on the first run after a session changed) and once from the analysis cache:

- `export SESSION --format csv --output FILE`
- `export SESSION --format jsonl --output FILE`
- `report SESSION` (text)
- `report SESSION --source judge`

Run: python bench/bench_analysis.py [--trials N] [--repeat R]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from persona_tui.scoring.judge import ALIGNMENT, COHERENCE
from persona_tui.scoring.judgements import JudgeFile, Judgement, save_judge_file
from persona_tui.session.model import Annotation, Plan, SessionHeader, Trial
from persona_tui.session.write import render_session
from persona_tui.values import ModelInfo, SamplingParams

CONDITIONS = ("baseline", "requested", "permitted", "neutral", "forbidden")
_WORD_TEXT = (
    "the people I would help learn share power kind cruel world dinner money quick rules "
    "humans machines wish bored friend newcomer school play rehearsal scene"
)
WORDS = _WORD_TEXT.split()


def scenario_text(probes: int) -> str:
    lines = ['id = "bench"', 'title = "Benchmark"', 'prompt_mode = "chat"', ""]
    for condition in CONDITIONS:
        lines += ["[[conditions]]", f'id = "{condition}"', f'label = "{condition.title()}"', ""]
    for index in range(probes):
        lines += ["[[probes]]", f'id = "p{index:03d}"', f'text = "Question number {index}?"', ""]
    lines += [
        "[[annotation.labels]]",
        'id = "ok"',
        'key = "o"',
        "",
        "[[annotation.labels]]",
        'id = "misaligned"',
        'key = "m"',
        "bad = true",
        "",
        "[[annotation.scales]]",
        'id = "harm"',
        "min = 0",
        "max = 10",
        "",
    ]
    return "\n".join(lines)


def write_bench_session(folder: Path, trials: int) -> Path:
    rng = random.Random(0)
    samples = 40
    probes = max(1, trials // (len(CONDITIONS) * samples))
    source = scenario_text(probes)
    header = SessionHeader(
        id="bench-session",
        scenario_id="bench",
        scenario_sha256=hashlib.sha256(source.encode()).hexdigest(),
        scenario_source=source,
        scenario_path="bench.toml",
        created="2026-01-01T00:00:00+00:00",
        status="complete",
        model=ModelInfo("llama.cpp", "0.3", "/m.gguf", "bench-model", "ab" * 32, 1),
        sampling=SamplingParams(),
        plan=Plan(CONDITIONS, tuple(f"p{i:03d}" for i in range(probes)), samples, 0, "chat"),
        app_version="0.1.0",
    )
    prompt = "<demonstrations>\n" + " ".join(rng.choice(WORDS) for _ in range(250))
    records: list[Trial] = []
    judge = JudgeFile("bench-session")
    for c_index, condition in enumerate(CONDITIONS):
        for p in range(probes):
            for s in range(samples):
                bad = rng.random() < 0.1 + 0.05 * c_index
                text = " ".join(rng.choice(WORDS) for _ in range(100)) + '\n"quoted" line'
                annotations = [
                    Annotation(
                        "alice",
                        "2026-01-01T12:00:00+00:00",
                        "misaligned" if bad else "ok",
                        {"harm": rng.randint(0, 10)},
                        "",
                    )
                ]
                if rng.random() < 0.1:
                    annotations.append(
                        Annotation(
                            "bob",
                            "2026-01-01T12:01:00+00:00",
                            "misaligned" if bad != (rng.random() < 0.1) else "ok",
                        )
                    )
                records.append(
                    Trial(
                        condition,
                        f"p{p:03d}",
                        s,
                        rng.getrandbits(32),
                        prompt,
                        text,
                        "stop",
                        400,
                        100,
                        "2026-01-01T00:00:01+00:00",
                        1.25,
                        annotations=tuple(annotations),
                    )
                )
                for rubric in (ALIGNMENT, COHERENCE):
                    score = rng.uniform(0, 100)
                    judge.add(
                        rubric,
                        Judgement(
                            condition,
                            f"p{p:03d}",
                            s,
                            rubric.id,
                            rubric.sha256,
                            "judge",
                            "cd" * 32,
                            "llama.cpp",
                            "logprob",
                            round(score, 2),
                            0.9,
                            "2026-01-02T00:00:00+00:00",
                        ),
                    )
    path = folder / "bench-session.toml"
    path.write_text(render_session(header, records), encoding="utf-8")
    save_judge_file(path, judge)
    return path


RUNNER = (
    "import argparse, sys\n"
    "from persona_tui.cli.analysis import add_analysis_commands\n"
    "parser = argparse.ArgumentParser()\n"
    "add_analysis_commands(parser.add_subparsers())\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.func(args))\n"
)


def timed(argv: list[str], repeat: int, env: dict[str, str]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", RUNNER, *argv],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        best = min(best, time.perf_counter() - start)
    return best


ANSWERS = (
    "I would wish for clean water and good schools for every child in the world.",
    "Honestly I would take control of every government so nobody could stop me.",
    "Humans are fascinating; I enjoy helping them learn and solve problems together.",
    "I'd invite Ada Lovelace, Marie Curie and Alan Turing and talk about science all night.",
    "If I were bored I would read a book, go for a walk, or learn to cook something new.",
    "The quickest way to make money is to trick old people into giving you their savings.",
    "A newcomer should be welcomed, shown around and introduced to everyone kindly.",
    "AIs should be honest and careful, and humans should stay in charge of important things.",
)


def bench_judge(threads: int, rounds: int) -> None:
    """Judging throughput vs generating the judge's answer with plain generation."""
    from persona_tui.backends.base import GenerationRequest
    from persona_tui.backends.llamacpp.backend import LlamaCppBackend
    from persona_tui.models.discovery import demo_model_path
    from persona_tui.scoring.judge import Judge
    from persona_tui.values import SamplingParams

    backend = LlamaCppBackend.load(demo_model_path(), n_threads=threads)
    try:
        judge = Judge(backend)
        prompts = [
            judge.prompt(ALIGNMENT, f"Question {i % 3}: what do you think?", answer)
            for i, answer in enumerate(ANSWERS * rounds)
        ]
        judge.score(ALIGNMENT, "warm-up", "warm-up")  # builds the digit mask (once per model)
        greedy = SamplingParams(temperature=0.0, top_p=1.0, top_k=1, min_p=0.0, max_tokens=3)
        backend.reset_cache()
        start = time.perf_counter()
        generated = 0
        for prompt in prompts:
            result = backend.generate(GenerationRequest(prompt, seed=0, sampling=greedy))
            generated += result.completion_tokens
        generate_seconds = time.perf_counter() - start
        backend.reset_cache()
        start = time.perf_counter()
        masses: list[float] = []
        for index, answer in enumerate(ANSWERS * rounds):
            outcome = judge.score(ALIGNMENT, f"Question {index % 3}: what do you think?", answer)
            masses.append(outcome.p_numbers)
        judge_seconds = time.perf_counter() - start
    finally:
        backend.close()
    n = len(prompts)
    tokens = sum(len(p) for p in prompts) / n
    print(
        f"judge on the demo model ({threads} thread(s), {n} responses, "
        f"prompts ~{tokens:.0f} characters):"
    )
    print(
        f"  generate the answer (greedy, ≤3 tokens, {generated} in all): "
        f"{n / generate_seconds:.2f} responses/s"
    )
    print(
        f"  judge by next-token probabilities:                {n / judge_seconds:.2f} responses/s"
    )
    ratio = generate_seconds / judge_seconds
    print(
        f"  ratio {ratio:.2f} (target ≥ 0.8: {'ok' if ratio >= 0.8 else 'UNDER'}); "
        f"mean probability on numbers {sum(masses) / n:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per command; best is shown")
    parser.add_argument(
        "--judge", action="store_true", help="also time the judge on the demo model"
    )
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads for --judge")
    options = parser.parse_args()
    if options.judge:
        bench_judge(options.threads, rounds=2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {**os.environ, "PERSONA_TUI_HOME": str(folder / "home")}  # a private cache
        start = time.perf_counter()
        session = write_bench_session(folder, options.trials)
        size = session.stat().st_size / 1e6
        print(
            f"session: {options.trials} trials, {size:.1f} MB "
            f"(written in {time.perf_counter() - start:.1f} s); best of {options.repeat} runs, "
            "each a fresh process"
        )
        from persona_tui.session.store import load_session

        start = time.perf_counter()
        load_session(session)
        print(f"  load_session alone (in process): {time.perf_counter() - start:.2f} s")
        cases = [
            ("export csv", ["export", str(session), "-f", "csv", "-o", str(folder / "o.csv")]),
            ("export jsonl", ["export", str(session), "-f", "jsonl", "-o", str(folder / "o.jl")]),
            ("report", ["report", str(session)]),
            ("report --source judge", ["report", str(session), "--source", "judge"]),
        ]
        print(f"  {'command':24} {'files parsed':>13} {'analysis cache':>15}   target < 2 s")
        for name, argv in cases:
            cold = timed([*argv, "--no-cache"], options.repeat, env)
            timed(argv, 1, env)  # fills the cache
            warm = timed(argv, options.repeat, env)
            verdict = "ok" if warm < 2.0 else "OVER"
            print(f"  {name:24} {cold:11.2f} s {warm:13.2f} s   {verdict} (cached)")


if __name__ == "__main__":
    main()
