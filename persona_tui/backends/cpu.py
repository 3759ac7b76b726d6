"""What this CPU can do and what a llama.cpp build asks of it.

llama.cpp's system info lists the features a build was compiled for (`AVX512 = 1`,
`AMX_INT8 = 1`, ...); a native build run on a CPU that lacks one dies with SIGILL.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

# llama.cpp's system-info feature names and the Linux /proc/cpuinfo flag each needs.
CPU_FLAG = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX_VNNI": "avx_vnni",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}


def cpu_features(system_info: str) -> dict[str, bool]:
    """The `NAME = 0/1` features in llama.cpp's system info (`llama_print_system_info`)."""
    return {
        name: value == "1"
        for name, value in re.findall(r"([A-Z][A-Z0-9_]*) = ([01])\b", system_info)
    }


def simd_features(system_info: str) -> list[str]:
    """The CPU instruction-set features a build uses, in llama.cpp's order."""
    return [n for n, on in cpu_features(system_info).items() if on and n in CPU_FLAG]


def cpu_flags() -> set[str] | None:
    """The CPU's flags from /proc/cpuinfo (Linux), None where that is not readable."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return None


def missing_features(system_info: str, flags: set[str] | None = None) -> list[str]:
    """Build features this CPU lacks (empty when unknown): the build is for another CPU."""
    flags = cpu_flags() if flags is None else flags
    if not flags:
        return []
    return [name for name in simd_features(system_info) if CPU_FLAG[name] not in flags]


def machine_summary() -> str:
    """One line naming the CPU (model name, AMX / AVX-512), for benches and reports."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags() or set()
    marks = [
        label for flag, label in (("amx_int8", "AMX"), ("avx512f", "AVX-512")) if flag in flags
    ]
    return f"{name}, {os.cpu_count()} CPUs" + (f", {'/'.join(marks)}" if marks else ", no AMX")
