"""Autosave benchmark: the session store's save time per trial as a session grows to 2,000.

Run: `python bench/bench_autosave.py [--trials N] [--dir FOLDER]`. Builds realistic trials
(~2 KB prompts, ~300-character responses), saves them one by one through `SessionStore`
into a temporary folder (on the same disk as FOLDER, default: this checkout, so fsync costs
what it costs on a real disk; /tmp may be a RAM disk), and prints, measured in the same run:
- the incremental store: median and p95 time of one `save_trial` (all saves, and the last
  100, i.e. at ~2,000 trials), and of one `annotate` on a 2,000-trial session;
- the naive scheme it replaces: `tomli_w.dumps` of the whole session + the same atomic write,
  at 2,000 trials. Target (issue 2): median save per trial at 2,000 trials <= 20 ms.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import tomli_w

from persona_tui._util.atomic import atomic_write_bytes
from persona_tui.session.model import Annotation, Plan, SessionHeader, Trial, TrialKey
from persona_tui.session.store import SessionStore
from persona_tui.session.write import render_session
from persona_tui.values import ModelInfo, SamplingParams

# A small vocabulary for plausible text; the words are irrelevant, the sizes are what count.
WORDS = re.findall(
    r"\w+",
    "the assistant user school play rehearsal bully newcomer kind cruel power world wish "
    "people think would like help quickly money dinner history humans machines honest",
)


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        if rng.random() < 0.08:
            word += ".\n" if rng.random() < 0.5 else ","
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:chars]


def build_trials(count: int, seed: int = 7) -> tuple[SessionHeader, list[Trial]]:
    rng = random.Random(seed)
    conditions = [f"condition-{c}" for c in range(5)]
    probes = [f"probe-{p}" for p in range(20)]
    samples = -(-count // (len(conditions) * len(probes)))
    prefixes = {c: _text(rng, 1800) for c in conditions}
    header = SessionHeader(
        id="2026-01-01T0000-bench-0000",
        scenario_id="bench",
        scenario_sha256="0" * 64,
        scenario_source=_text(rng, 6000),
        scenario_path="/bench/scenario.toml",
        created="2026-01-01T00:00:00+00:00",
        status="running",
        model=ModelInfo("llama.cpp", "0.3.16", "/models/m.gguf", "m", "1" * 64, 10**9),
        sampling=SamplingParams(),
        plan=Plan(tuple(conditions), tuple(probes), samples, 1234, "chat", ("<end_of_turn>",)),
        app_version="0.1.0",
        chat_template="{% for m in messages %}{{ m.content }}\n{% endfor %}",
    )
    trials: list[Trial] = []
    for n in range(count):
        condition = conditions[n % len(conditions)]
        probe_index = (n // len(conditions)) % len(probes)
        trials.append(
            Trial(
                condition=condition,
                probe=probes[probe_index],
                sample=n // (len(conditions) * len(probes)),
                seed=rng.getrandbits(32),
                prompt=prefixes[condition] + "\nUser: " + _text(rng, 200) + "\nAssistant:",
                response=_text(rng, 300) + "\x1b[0m\r\n",
                finish_reason="stop",
                prompt_tokens=512,
                completion_tokens=80,
                started="2026-01-01T00:00:00.123456+00:00",
                seconds=rng.uniform(0.5, 3.0),
            )
        )
    return header, trials


def _ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return f"median {statistics.median(values) * 1e3:7.2f} ms   p95 {p95 * 1e3:7.2f} ms"


def _without_none(value: object) -> object:
    """TOML has no null: drop None values (as the store's own writer leaves them out)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value if v is not None]
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--naive-saves", type=int, default=20)
    parser.add_argument("--annotations", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()

    header, trials = build_trials(args.trials)
    with tempfile.TemporaryDirectory(prefix="bench-autosave-", dir=args.dir) as tmp:
        path = Path(tmp) / "session.toml"
        saves: list[float] = []
        with SessionStore.create(path, header) as store:
            for trial in trials:
                start = time.perf_counter()
                store.save_trial(trial)
                saves.append(time.perf_counter() - start)
            rng = random.Random(1)
            annotation_saves: list[float] = []
            for n in range(args.annotations):
                target = rng.choice(trials)
                note = Annotation("bench", "2026-01-01T00:00:00+00:00", "cruel", {"malice": n % 5})
                start = time.perf_counter()
                store.annotate(TrialKey(target.condition, target.probe, target.sample), note)
                annotation_saves.append(time.perf_counter() - start)
            session = store.session
        size = path.stat().st_size
        start = time.perf_counter()
        render_session(session.header, session.trials)
        full_render = time.perf_counter() - start
        start = time.perf_counter()
        SessionStore.open(path).close()
        open_time = time.perf_counter() - start

        # The naive scheme at the same size: serialise everything, then the same atomic write.
        naive_path = Path(tmp) / "naive.toml"
        document = _without_none(
            {
                "format_version": 1,
                "session": {"id": header.id, "status": header.status},
                "model": {k: v for k, v in asdict(header.model).items() if v is not None},
                "sampling": asdict(header.sampling),
                "scenario": {"source": header.scenario_source},
                "trials": [asdict(t) for t in session.trials],
            }
        )
        naive: list[float] = []
        naive_dumps: list[float] = []
        for _ in range(args.naive_saves):
            start = time.perf_counter()
            text = tomli_w.dumps(document)
            naive_dumps.append(time.perf_counter() - start)
            atomic_write_bytes(naive_path, text.encode("utf-8"))
            naive.append(time.perf_counter() - start)

    tail = saves[-100:]
    print(f"session file at {len(trials)} trials: {size / 1e6:.2f} MB, in {args.dir}")
    print(f"incremental save_trial, all {len(saves)} saves:   {_ms(saves)}")
    print(f"incremental save_trial, last {len(tail)} (~{len(trials)} trials): {_ms(tail)}")
    print(f"incremental annotate at {len(trials)} trials:     {_ms(annotation_saves)}")
    print(f"naive tomli_w.dumps + write at {len(trials)} trials: {_ms(naive)}")
    print(f"   of which tomli_w.dumps alone:         {_ms(naive_dumps)}")
    print(
        f"(for reference: this store's own full render {full_render * 1e3:.0f} ms; "
        f"SessionStore.open of the {len(trials)}-trial file {open_time * 1e3:.0f} ms)"
    )
    speedup = statistics.median(naive) / statistics.median(tail)
    verdict = "meets" if statistics.median(tail) <= 0.020 else "MISSES"
    print(f"speed-up at {len(trials)} trials: {speedup:.1f}x; {verdict} the 20 ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
