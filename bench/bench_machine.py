"""What the benches share and the package does not need: one line naming the machine.

Bench scripts run as `python bench/bench_x.py`, so this folder is on `sys.path` and they
import this module as `bench_machine`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from persona_tui.backends.cpu import cpu_flags


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
