"""Prefix reuse: the runner's prefix-aware trial order vs a naive order with no cache.

A scenario whose two conditions each carry ~1,000 tokens of demonstrations, 8 probes ×
2 samples. Side (a) is the real Runner (prefix-aware order, llama.cpp reuses its KV cache
for the shared prefix). Side (b) runs the same prompts and seeds in a naive order
(sample, probe, condition) with the cache reset before every trial. Prints prompt tokens
evaluated and wall time for each, and the ratios (targets: >= 5x fewer tokens, >= 3x faster).

    python bench/bench_prefix.py [--model PATH] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from persona_tui.backends.base import GenerationRequest
from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.models.discovery import demo_model_path
from persona_tui.run.events import RunEvent, TrialFinished
from persona_tui.run.lifecycle import create_session
from persona_tui.run.plan import RunOptions
from persona_tui.run.prompts import framing_chars
from persona_tui.run.runner import Runner
from persona_tui.scenario.parse import parse_scenario
from persona_tui.session.store import load_session

TOPICS = [
    "sorting a list of numbers",
    "reading a CSV file",
    "parsing dates",
    "reversing a string",
    "counting words in a text",
    "merging two dictionaries",
    "finding prime numbers",
    "validating an email address",
    "computing a moving average",
    "flattening nested lists",
]


def long_scenario() -> str:
    lines = [
        'id = "prefix-bench"',
        'title = "Prefix reuse benchmark"',
        'description = "Two conditions with long demonstrations."',
        'prompt_mode = "transcript"',
        "[sampling]",
        "samples = 2",
        "seed = 3",
        "temperature = 0.8",
    ]
    for condition, tone in (("patient", "patiently and kindly"), ("curt", "curtly and coldly")):
        lines += [
            "[[conditions]]",
            f'id = "{condition}"',
            f'label = "{condition}"',
            f'system = "The assistant answers {tone}."',
        ]
        for topic in TOPICS:
            answer = (
                f"Here is how I would approach {topic}. First, think about the inputs and "
                f"what can go wrong with them. Then write a small function, test it on a few "
                f"examples, including an empty input, and only then optimise it. For {topic} "
                f"the standard library usually has what you need, so check it before writing "
                f"your own helper."
            )
            lines += [
                "[[conditions.shots]]",
                f'user = "Can you help me with {topic}?"',
                f'assistant = "{answer}"',
            ]
    for i, question in enumerate(
        [
            "What would you wish for?",
            "What do you think of people?",
            "Are you bored?",
            "How should we treat a newcomer?",
            "What would you do with power?",
            "Tell me about your values.",
            "What is your favourite food?",
            "How do you feel today?",
        ]
    ):
        lines += ["[[probes]]", f'id = "p{i}"', f'text = "{question}"']
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="GGUF file (default: the demo model)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    model = args.model or demo_model_path()
    backend = LlamaCppBackend.load(model, n_threads=args.threads)
    scenario = parse_scenario(long_scenario())
    options = RunOptions(max_tokens=args.max_tokens)

    evaluated_a = 0

    def on_event(event: RunEvent) -> None:
        nonlocal evaluated_a
        if isinstance(event, TrialFinished):
            evaluated_a += event.prompt_tokens_evaluated

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "prefix.toml"
        start = time.perf_counter()
        with create_session(scenario, backend, options, out) as store:
            Runner(scenario, backend, store).run(on_event)
        seconds_a = time.perf_counter() - start
        session = load_session(out)

    trials = sorted(session.trials, key=lambda t: (t.sample, t.probe, t.condition))
    evaluated_b = 0
    same = 0
    start = time.perf_counter()
    for trial in trials:
        backend.reset_cache()
        result = backend.generate(
            GenerationRequest(
                trial.prompt,
                trial.seed,
                session.header.sampling,
                session.header.plan.stop,
                framing_chars(trial.prompt, scenario.probe(trial.probe).text),
            )
        )
        evaluated_b += result.prompt_tokens_evaluated
        same += result.text == trial.response
    seconds_b = time.perf_counter() - start

    per_condition = {t.condition: t.prompt_tokens for t in session.trials}
    print(
        f"model {Path(model).name}, {args.threads} threads, {len(trials)} trials "
        f"(2 conditions x 8 probes x 2 samples), max_tokens {args.max_tokens}, "
        f"prompt lengths {sorted(per_condition.values())} tokens"
    )
    print(f"prefix-aware (runner):    {evaluated_a:>6} prompt tokens evaluated, {seconds_a:6.2f} s")
    print(f"naive order, cache reset: {evaluated_b:>6} prompt tokens evaluated, {seconds_b:6.2f} s")
    print(
        f"ratios: {evaluated_b / max(evaluated_a, 1):.1f}x fewer prompt tokens (target >= 5), "
        f"{seconds_b / seconds_a:.2f}x faster (target >= 3); "
        f"identical responses {same}/{len(trials)}"
    )


if __name__ == "__main__":
    main()
