"""Constructing a llama-cpp-python `Llama` quietly, one at a time, on the physical cores.

- llama.cpp never writes to the terminal: a silent log callback is installed before any
  model loads (`verbose=False` alone is not enough), and llama-cpp-python's own prints
  during the load are captured (see `_quiet_python_output` for why not verbose=False).
- A file llama.cpp cannot load raises ModelLoadError naming the file and the likely fix.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persona_tui.backends.gguf_header import GGUFHeader
from persona_tui.errors import ModelLoadError

# The silent log callback must outlive every model: llama.cpp keeps a raw pointer to it.
_SILENT_LOG_CALLBACK: Any = None
# Loading swaps sys.stdout/sys.stderr (see `_quiet_python_output`): one load at a time.
_LOAD_LOCK = threading.Lock()


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


def _silence_llama_cpp(llama_cpp: Any) -> None:
    """Route llama.cpp's and ggml's log output to a no-op (verbose=False alone is not enough)."""
    global _SILENT_LOG_CALLBACK
    if _SILENT_LOG_CALLBACK is None:

        def _discard(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            return None

        _SILENT_LOG_CALLBACK = llama_cpp.llama_log_callback(_discard)
    llama_cpp.llama_log_set(_SILENT_LOG_CALLBACK, ctypes.c_void_p(0))


@contextlib.contextmanager
def _quiet_python_output() -> Iterator[None]:
    """Swallow llama-cpp-python's own `print`s while a model loads.

    The model is constructed with verbose=True, because verbose=False makes
    llama-cpp-python dup2 /dev/null over file descriptors 1 and 2 of the whole process
    during the load, which would blank a TUI drawing from another thread. With logging
    silenced at the source, only Python-level prints remain, and these are captured.
    """
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def construct_llama(path: Path, header: GGUFHeader, *, n_ctx: int, n_threads: int) -> Any:
    """A silent `llama_cpp.Llama` for the (already checked) GGUF at `path`.

    Raises ModelLoadError when llama-cpp-python is not usable or cannot load the file.
    """
    try:
        import llama_cpp
    except ImportError as exc:  # a broken install (missing shared library, ...)
        raise ModelLoadError(
            f"llama-cpp-python is not usable ({exc}); reinstall it: "
            "pip install --force-reinstall llama-cpp-python"
        ) from exc
    with _LOAD_LOCK:
        _silence_llama_cpp(llama_cpp)
        try:
            with _quiet_python_output():
                llama = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    # A full-size sliding-window cache: otherwise cells a reused
                    # prefix still needs may already be overwritten (Gemma 3, ...).
                    swa_full=True,
                    verbose=True,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load {path} (architecture "
                f"{header.architecture or 'unknown'!r}): {exc}. The file may be damaged "
                f"(re-download it), or its architecture may be newer than this "
                f"llama-cpp-python {llama_cpp.__version__} (upgrade it)."
            ) from exc
        llama.verbose = False  # its generate() prints cache hits when verbose
    return llama


def llama_cpp_version() -> str:
    """The version of the llama-cpp-python that `construct_llama` loaded with."""
    import llama_cpp

    return str(llama_cpp.__version__)
