"""Never the crashing AMX path: the repack decision, the canary child, `persona-tui doctor`.

The decision is unit-tested on system-info lines of builds we may not have (AMX, none);
the canary and the doctor run the real engine in child processes on this machine.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from persona_tui.backends.cpu import CPU_FLAG, cpu_features, missing_features, simd_features
from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.backends.llamacpp.canary import explain_crash, run_canary
from persona_tui.backends.llamacpp.load import choose_repack, system_info, weight_buffers
from persona_tui.errors import ModelLoadError

AMX_BUILD = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1 | "
    "AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | "
    "REPACK = 1 | "
)
AVX2_BUILD = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | REPACK = 1 | "


def test_auto_turns_repacking_off_on_amx_builds_only() -> None:
    amx = choose_repack("auto", AMX_BUILD)
    assert not amx.enabled and "AMX_INT8" in amx.reason and "20824" in amx.reason
    plain = choose_repack("auto", AVX2_BUILD)
    assert plain.enabled and plain.setting == "auto"


def test_forcing_either_way_wins_over_the_build() -> None:
    assert choose_repack("on", AMX_BUILD).enabled
    assert not choose_repack("off", AVX2_BUILD).enabled
    with pytest.raises(ModelLoadError, match="expected one of auto, on, off"):
        choose_repack("yes", AVX2_BUILD)


def test_features_and_weight_buffers_are_read_from_what_llama_cpp_prints() -> None:
    assert cpu_features(AMX_BUILD)["AMX_INT8"] and not cpu_features(AVX2_BUILD).get("AMX_INT8")
    assert "OPENMP" not in simd_features(AMX_BUILD)  # only instruction sets
    log = [
        "load_tensors:          AMX model buffer size =   120.00 MiB\n",
        "load_tensors:   CPU_Mapped model buffer size =   240.00 MiB\n",
        "load_tensors:   CPU_Mapped model buffer size =    10.00 MiB\n",
        "llama_context:        CPU compute buffer size =     5.00 MiB\n",
    ]
    assert weight_buffers(log) == ("AMX", "CPU_Mapped")


def test_a_build_for_another_cpu_is_recognised() -> None:
    flags_without_avx512 = {"pni", "ssse3", "avx", "avx2", "f16c", "fma"}
    assert missing_features(AMX_BUILD, flags_without_avx512) == [
        "AVX512",
        "AVX512_VNNI",
        "AVX512_BF16",
        "AMX_INT8",
    ]
    message = explain_crash(
        "loaded", -signal.SIGILL, {"system_info": AMX_BUILD}, flags_without_avx512
    )
    assert "another CPU" in message and "--no-cache-dir" in message


def test_the_model_record_says_how_weights_were_loaded(tiny_gguf: Path) -> None:
    backend = LlamaCppBackend.load(tiny_gguf, n_threads=1)
    try:
        extra = backend.info.extra
    finally:
        backend.close()
    amx_build = bool(cpu_features(system_info()).get("AMX_INT8"))
    assert extra["repack"] == ("off" if amx_build else "on")
    assert extra["repack_setting"] == "auto" and extra["repack_reason"]
    assert "AMX" not in extra["weight_buffers"].split(",")
    assert extra["weight_buffers"]  # the load log was read
    assert "CPU :" in extra["system_info"]


def _fake_python(tmp_path: Path, stages: list[dict[str, object]], sig: int) -> str:
    """An executable that reports `stages` like the canary child, then dies from `sig`."""
    script = tmp_path / "fake-python"
    lines = "".join(f"print({json.dumps(json.dumps(s))}, flush=True)\n" for s in stages)
    script.write_text(
        f"#!{sys.executable}\nimport os, signal\n{lines}os.kill(os.getpid(), {int(sig)})\n"
    )
    script.chmod(0o755)
    return str(script)


def test_a_native_crash_in_the_child_becomes_a_sentence(tmp_path: Path) -> None:
    stages: list[dict[str, object]] = [
        {"stage": "started"},
        {"stage": "imported", "system_info": AVX2_BUILD},
        {"stage": "loaded", "repack": "off", "repack_reason": "forced off"},
    ]
    fake = _fake_python(tmp_path, stages, signal.SIGSEGV)
    result = run_canary(tmp_path / "m.gguf", python=fake)
    assert not result.ok and result.returncode == -signal.SIGSEGV
    assert result.stage == "loaded" and result.system_info == AVX2_BUILD
    assert result.message.startswith("llama.cpp crashed (SIGSEGV) in its first decode")
    assert "doctor --json" in result.message


def test_forced_repacking_on_an_amx_build_is_explained(tmp_path: Path) -> None:
    stages: list[dict[str, object]] = [
        {"stage": "started"},
        {"stage": "imported", "system_info": AMX_BUILD},
        {"stage": "loaded", "repack": "on", "repack_reason": "forced on by the repack setting"},
    ]
    result = run_canary(tmp_path / "m.gguf", python=_fake_python(tmp_path, stages, 11))
    missing = missing_features(AMX_BUILD)
    if missing:  # on this CPU an AMX build is a build for another CPU: that sentence instead
        assert "another CPU" in result.message and missing[-1] in result.message
    else:
        assert "AMX crash" in result.message and "--repack auto" in result.message


def test_the_amx_crash_is_named_on_an_amx_cpu_whatever_cpu_runs_the_test() -> None:
    amx_cpu = {CPU_FLAG[name] for name in simd_features(AMX_BUILD)}
    facts = {"system_info": AMX_BUILD, "repack": "on", "repack_reason": "forced on"}
    message = explain_crash("loaded", -signal.SIGSEGV, facts, amx_cpu)
    assert "AMX crash" in message and "--repack auto" in message
    assert "another CPU" not in message


def test_canary_runs_the_real_engine(tiny_gguf: Path) -> None:
    result = run_canary(tiny_gguf, n_threads=1)
    assert result.ok, result.message
    assert result.stage == "generated" and result.facts["tokens"] > 0
    assert "CPU :" in result.system_info


def test_doctor_is_green_on_a_working_model_and_says_so_in_json(tiny_gguf: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "persona_tui", "doctor", "--model", str(tiny_gguf), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] and checks["generation"]["status"] == "ok"
    assert checks["llama.cpp"]["details"]["system_info"].startswith("CPU :")
    assert set(checks) >= {"python", "folders", "llama.cpp", "demo model", "generation", "mlx"}


def test_doctor_fails_clearly_on_a_broken_model(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    done = subprocess.run(
        [sys.executable, "-m", "persona_tui", "doctor", "--model", str(broken)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    line = next(x for x in done.stdout.splitlines() if x.startswith("[FAIL] generation"))
    assert str(broken) in line and "Traceback" not in done.stdout + done.stderr


def test_the_child_reports_a_missing_engine_in_one_line(tmp_path: Path) -> None:
    """A Python without llama_cpp: the canary says so instead of a traceback."""
    script = tmp_path / "no-llama-python"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import sys, runpy
            sys.modules["llama_cpp"] = None  # import llama_cpp now raises ImportError
            sys.argv = ["canary", *sys.argv[3:]]
            runpy.run_module("persona_tui.backends.llamacpp.canary", run_name="__main__")
            """
        )
    )
    script.chmod(0o755)
    result = run_canary(tmp_path / "m.gguf", python=str(script))
    assert not result.ok and "llama-cpp-python is not usable" in result.message
