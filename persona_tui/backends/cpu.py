"""What this CPU can do and what a llama.cpp build asks of it.

llama.cpp's system info lists the features a build was compiled for (`AVX512 = 1`,
`AMX_INT8 = 1`, ...); a native build run on a CPU that lacks one dies with SIGILL.
`default_n_threads` counts the physical cores this process may use (no engine import:
the doctor reports it without loading llama.cpp).
"""

from __future__ import annotations

import os
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


def default_n_threads() -> int:
    """Physical cores available to this process (llama.cpp gains nothing from SMT siblings).

    Rule: the CPUs in this process's affinity mask, grouped by their SMT sibling sets
    (Linux sysfs); where that is unavailable, the number of usable logical CPUs.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    cores: set[str] = set()
    for cpu in cpus:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))
