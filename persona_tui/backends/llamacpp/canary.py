"""A first contact with llama.cpp in a child process, so a native crash becomes a sentence.

`run_canary(model)` starts `python -m persona_tui.backends.llamacpp.canary MODEL`, which
reports each stage as one JSON line on stdout as soon as it is reached (llama.cpp's build
and system info, the model loaded, the first tokens decoded). When the child dies from a
signal, the last stage it reported says where llama.cpp crashed, and the system info it
printed first says on what build and CPU. `persona-tui doctor` and the test suite's
canary fixtures use it; nothing here imports llama_cpp in the calling process.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona_tui.backends.llamacpp.load import AMX_ISSUE

CANARY_PROMPT = "User: Say hello.\nAssistant:"
CANARY_TOKENS = 8
# The stages the child reports, in order; a crash happens in the one after the last seen.
STAGES = ("started", "imported", "loaded", "generated")
_DOING = {
    "started": "while importing llama_cpp",
    "imported": "while loading the model",
    "loaded": "in its first decode",
    "generated": "while shutting down",
}
REPORT_HINT = (
    "if you see this, report it with the output of `persona-tui doctor --json` "
    "(https://example.invalid/persona-tui/issues)"
)


@dataclass(frozen=True)
class CanaryResult:
    """What the child process reached, and a sentence for the user when it failed."""

    ok: bool
    message: str
    stage: str  # the last stage reported ("" when the child reported nothing)
    returncode: int | None  # None: timed out
    seconds: float
    facts: dict[str, Any] = field(default_factory=dict)  # merged JSON of every stage
    stderr: str = ""

    @property
    def system_info(self) -> str:
        return str(self.facts.get("system_info", ""))


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _features_text(facts: dict[str, Any]) -> str:
    from persona_tui.backends.cpu import simd_features

    on = simd_features(str(facts.get("system_info", "")))
    wanted = [f for f in ("AMX_INT8", "AVX512", "AVX2", "AVX") if f in on]
    return ", ".join(wanted[:2]) if wanted else "no x86 SIMD reported"


def explain_crash(
    stage: str, returncode: int, facts: dict[str, Any], cpu_flags: set[str] | None = None
) -> str:
    """The sentence a user reads when the child died from a signal after `stage`.

    `cpu_flags` (default: this CPU's) tell a build for another CPU from an engine bug.
    """
    from persona_tui.backends.cpu import missing_features

    name = _signal_name(returncode)
    doing = _DOING.get(stage, "before reporting anything")
    missing = missing_features(str(facts.get("system_info", "")), cpu_flags)
    if missing:
        return (
            f"llama.cpp crashed ({name}) {doing}: this llama-cpp-python was compiled for "
            f"another CPU (it uses {', '.join(missing)}, which this CPU lacks), e.g. a "
            "cached wheel built on a newer machine. Rebuild it here: "
            "pip install --force-reinstall --no-cache-dir llama-cpp-python"
        )
    where = f"llama.cpp crashed ({name}) {doing} on this CPU ({_features_text(facts)})"
    repack = facts.get("repack")
    if repack == "on" and "AMX_INT8" in _features_text(facts):
        return (
            f"{where} with weight repacking on ({facts.get('repack_reason')}): that is "
            f'llama.cpp\'s AMX crash ({AMX_ISSUE}); use --repack auto or repack = "auto" '
            "in config.toml, which turns repacking off on AMX builds"
        )
    avoided = (
        f"persona-tui had weight repacking {repack} ({facts.get('repack_reason')})"
        if repack
        else "persona-tui turns weight repacking off on AMX builds (--repack off forces it)"
    )
    return f"{where}; {avoided}; {REPORT_HINT}"


def run_canary(
    model: Path,
    *,
    repack: str = "auto",
    n_threads: int | None = None,
    timeout: float = 180.0,
    python: str | None = None,
) -> CanaryResult:
    """Load `model` and decode a few tokens in a child process; never crashes the caller."""
    command = [python or sys.executable, "-m", __name__, str(model), "--repack", repack]
    if n_threads is not None:
        command += ["--threads", str(n_threads)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        stdout, stderr, returncode = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        stdout = _text(expired.stdout)
        stderr = _text(expired.stderr)
        returncode = None
    seconds = time.perf_counter() - started
    facts: dict[str, Any] = {}
    stage = ""
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("stage") in STAGES:
            stage = str(record["stage"])
            facts.update(record)
    if returncode is None:
        message = (
            f"llama.cpp did not finish {_DOING.get(stage, 'starting')} within {timeout:.0f} s "
            f"(threads waiting on a busy CPU? try --threads 1)"
        )
        return CanaryResult(False, message, stage, None, seconds, facts, stderr)
    if returncode < 0:
        message = explain_crash(stage, returncode, facts)
        return CanaryResult(False, message, stage, returncode, seconds, facts, stderr)
    if returncode != 0 or stage != "generated":
        error = str(facts.get("error") or _last_line(stderr) or f"exit status {returncode}")
        message = f"llama.cpp could not run {model}: {error}"
        return CanaryResult(False, message, stage, returncode, seconds, facts, stderr)
    rate = facts.get("tokens_per_s", 0.0)
    message = (
        f"llama.cpp loaded {model.name} and generated {facts.get('tokens')} tokens "
        f"({rate:.1f} tok/s, weight repacking {facts.get('repack')})"
    )
    return CanaryResult(True, message, stage, returncode, seconds, facts, stderr)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ------------------------------------------------------------------------- the child


def _report(stage: str, **facts: Any) -> None:
    print(json.dumps({"stage": stage, **facts}), flush=True)


def _child(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m persona_tui.backends.llamacpp.canary")
    parser.add_argument("model", type=Path)
    parser.add_argument("--repack", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    _report("started", python=sys.version.split()[0])
    from persona_tui.backends.llamacpp.load import llama_cpp_version, system_info
    from persona_tui.errors import PersonaError

    try:
        info = system_info()
        version = llama_cpp_version()
    except (ImportError, OSError) as exc:
        _report("started", error=f"llama-cpp-python is not usable: {exc}")
        return 1
    _report("imported", system_info=info.strip(), llama_cpp_python=version)
    from persona_tui.backends.base import GenerationRequest
    from persona_tui.backends.llamacpp.backend import LlamaCppBackend
    from persona_tui.values import SamplingParams

    try:
        backend = LlamaCppBackend.load(args.model, n_threads=args.threads, repack=args.repack)
        facts = backend.load_facts
        _report(
            "loaded",
            repack="on" if facts.repack.enabled else "off",
            repack_setting=facts.repack.setting,
            repack_reason=facts.repack.reason,
            weight_buffers=list(facts.weight_buffers),
        )
        request = GenerationRequest(
            prompt=CANARY_PROMPT,
            seed=1,
            sampling=SamplingParams(temperature=0.0, max_tokens=CANARY_TOKENS),
        )
        result = backend.generate(request)
        # Batched decoding runs other kernels (several rows per step): decode a batch too.
        for _ in backend.generate_batch([request, request]):
            pass
    except PersonaError as exc:
        _report("imported", error=str(exc))
        return 1
    rate = result.completion_tokens / max(result.seconds, 1e-9)
    _report(
        "generated",
        text=result.text,
        tokens=result.completion_tokens,
        tokens_per_s=round(rate, 2),
    )
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child())
