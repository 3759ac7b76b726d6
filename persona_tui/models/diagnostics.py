"""The checks of `persona-tui doctor`: what is installed, what this CPU and build can do,
and whether a short generation works, each engine touched only in a child process.

Each check is ok, warn or fail; the report is green (exit 0) when nothing failed. The
command itself (printing the report as text or JSON) is in `persona_tui.cli.doctor`.
"""

from __future__ import annotations

import importlib.util
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from persona_tui import __version__, paths
from persona_tui._util.hashing import sha256_file
from persona_tui.backends.cpu import cpu_flags, default_n_threads, missing_features, simd_features
from persona_tui.backends.detect import mlx_platform_note
from persona_tui.backends.registry import run_llama_cpp_canary
from persona_tui.errors import PersonaError
from persona_tui.models.config import load_config
from persona_tui.models.discovery import DEMO_INSTALL_HINT, demo_available, demo_model_path

if TYPE_CHECKING:
    from persona_tui.backends.registry import CanaryResult

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)


def _python_check() -> Check:
    return Check(
        "python",
        "ok",
        f"Python {platform.python_version()} ({sys.executable}), persona-tui {__version__}, "
        f"{platform.system()} {platform.machine()}",
        {
            "python": platform.python_version(),
            "executable": sys.executable,
            "persona_tui": __version__,
            "platform": platform.platform(),
        },
    )


def _folders_check() -> Check:

    details = {
        "config_file": str(paths.config_file()),
        "data_dir": str(paths.data_dir()),
        "sessions_dir": str(paths.sessions_dir()),
        "cache_dir": str(paths.cache_dir()),
    }
    try:
        config = load_config()
    except PersonaError as error:
        return Check("folders", "fail", f"the config file is invalid: {error}", details)
    details["repack"] = config.repack
    details["threads"] = str(config.threads or "")
    where = "" if paths.config_file().is_file() else ", not created yet: all defaults"
    return Check(
        "folders",
        "ok",
        f"config {paths.config_file()} (repack {config.repack}{where}); "
        f"sessions in {paths.sessions_dir()}",
        details,
    )


def _build_check(canary: CanaryResult | None, flags: set[str] | None) -> Check:
    if importlib.util.find_spec("llama_cpp") is None:
        return Check(
            "llama.cpp", "fail", "llama-cpp-python is not installed: pip install llama-cpp-python"
        )
    if canary is None or not canary.system_info:
        reason = canary.message if canary else "no model to try it on"
        return Check("llama.cpp", "warn", f"build not inspected: {reason}")
    on = simd_features(canary.system_info)
    details: dict[str, Any] = {
        "llama_cpp_python": canary.facts.get("llama_cpp_python", ""),
        "system_info": canary.system_info,
        "features": on,
        "threads_default": default_n_threads(),
    }
    missing = missing_features(canary.system_info, flags)
    if flags is not None:
        details["cpu_amx"] = "amx_int8" in flags
        details["cpu_avx512"] = "avx512f" in flags
    summary = (
        f"llama-cpp-python {details['llama_cpp_python']}, build features: "
        f"{', '.join(on) or 'none reported'}"
    )
    if missing:
        return Check(
            "llama.cpp",
            "fail",
            f"{summary}; this CPU lacks {', '.join(missing)}: the build was compiled for "
            "another CPU. Rebuild it here: "
            "pip install --force-reinstall --no-cache-dir llama-cpp-python",
            details,
        )
    return Check("llama.cpp", "ok", summary, details)


def _demo_check() -> tuple[Check, Path | None]:

    if not demo_available():
        return Check("demo model", "warn", f"not installed ({DEMO_INSTALL_HINT})"), None

    try:
        path = demo_model_path()
        digest = sha256_file(path)
    except PersonaError as error:
        return Check("demo model", "fail", str(error)), None
    size = path.stat().st_size
    return (
        Check(
            "demo model",
            "ok",
            f"{path} ({size / 1e6:.0f} MB, sha256 {digest[:12]}…)",
            {"path": str(path), "sha256": digest, "size_bytes": size},
        ),
        path,
    )


def _generation_check(canary: CanaryResult | None, model: Path | None) -> Check:
    if canary is None:
        return Check(
            "generation", "warn", "no llama.cpp model to try (install the demo or pass --model)"
        )
    details = {
        "model": str(model),
        "stage": canary.stage,
        "returncode": canary.returncode,
        "seconds": round(canary.seconds, 2),
        **{k: v for k, v in canary.facts.items() if k not in ("stage", "system_info")},
    }
    if canary.ok:
        return Check("generation", "ok", canary.message, details)
    if canary.stderr.strip():
        details["stderr_tail"] = canary.stderr.strip().splitlines()[-20:]
    return Check("generation", "fail", canary.message, details)


def _mlx_check() -> Check:
    if importlib.util.find_spec("mlx") is None or importlib.util.find_spec("mlx_lm") is None:
        return Check("mlx", "ok", "not installed (optional: pip install 'persona-tui[mlx]')", {})
    code = (
        "import mlx.core as mx, importlib.metadata as m;"
        "print(m.version('mlx'), m.version('mlx-lm'), mx.default_device(), sep='|')"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return Check("mlx", "warn", "importing mlx took longer than 60 s")
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return Check("mlx", "warn", f"installed but not importable: {tail}")
    mlx, mlx_lm, device = [*done.stdout.strip().split("|"), "", "", ""][:3]

    note = mlx_platform_note()
    return Check(
        "mlx",
        "ok",
        f"mlx {mlx}, mlx-lm {mlx_lm} on {device}" + (f" ({note})" if note else ""),
        {"mlx": mlx, "mlx_lm": mlx_lm, "device": device},
    )


def run_doctor(
    model: Path | None = None, *, repack: str | None = None, threads: int | None = None
) -> DoctorReport:
    """Run every check; `model` (a GGUF) replaces the demo model for the generation check."""
    demo, demo_path = _demo_check()
    target = model or demo_path
    try:
        config_repack = load_config().repack
    except PersonaError:
        config_repack = "auto"
    canary = (
        run_llama_cpp_canary(target, repack=repack or config_repack, n_threads=threads)
        if target is not None and importlib.util.find_spec("llama_cpp") is not None
        else None
    )
    flags = cpu_flags()
    checks = [
        _python_check(),
        _folders_check(),
        _build_check(canary, flags),
        demo,
        _generation_check(canary, target),
        _mlx_check(),
    ]
    return DoctorReport(tuple(checks))
