"""Constructing a llama-cpp-python `Llama` quietly, one at a time, on the physical cores.

- llama.cpp never writes to the terminal: a silent log callback is installed before any
  model loads (`verbose=False` alone is not enough), and llama-cpp-python's own prints
  during the load are captured (see `_quiet_python_output` for why not verbose=False).
- A file llama.cpp cannot load raises ModelLoadError naming the file and the likely fix.
- The crashing AMX path is never taken (see `choose_repack`): llama.cpp's "extra buffer
  types" (weight repacking, AMX) are turned off when the build reports AMX_INT8, and the
  buffer types the weights were actually loaded into are read from the load log.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_tui.backends.cpu import cpu_features
from persona_tui.backends.gguf_file import GGUFHeader
from persona_tui.errors import ModelLoadError

# The silent log callback must outlive every model: llama.cpp keeps a raw pointer to it.
_SILENT_LOG_CALLBACK: Any = None
# Loading swaps sys.stdout/sys.stderr (see `_quiet_python_output`): one load at a time.
_LOAD_LOCK = threading.Lock()
# While a model loads (under _LOAD_LOCK), llama.cpp's log lines are kept here, so the
# buffer types the weights went to can be read ("AMX model buffer size = ...").
_LOAD_LOG: list[str] | None = None
_BUFFER_LINE = re.compile(r"\b([A-Za-z0-9_]+) model buffer size\b")

REPACK_SETTINGS = ("auto", "on", "off")
AMX_ISSUE = "https://github.com/ggml-org/llama.cpp/issues/20824"


@dataclass(frozen=True)
class RepackChoice:
    """Whether llama.cpp may put weights in its extra buffer types (repacking, AMX), and why.

    It belongs to the reproducibility record: repacked weights run other kernels, whose
    rounding can differ.
    """

    enabled: bool
    setting: str  # "auto", "on" or "off", as asked for
    reason: str


def choose_repack(setting: str, system_info: str) -> RepackChoice:
    """The extra-buffer-type decision for `setting` ("auto", "on", "off") on this build.

    auto: off when the build reports AMX_INT8 = 1, because llama.cpp's AMX matmul on
    repacked weights segfaults on Sapphire Rapids class CPUs (llama.cpp#20824); on where
    it does not (the CPU_REPACK kernels are safe and can be faster).
    """
    if setting not in REPACK_SETTINGS:
        raise ModelLoadError(f"repack = {setting!r}: expected one of {', '.join(REPACK_SETTINGS)}")
    if setting == "on":
        return RepackChoice(True, setting, "forced on by the repack setting")
    if setting == "off":
        return RepackChoice(False, setting, "forced off by the repack setting")
    if cpu_features(system_info).get("AMX_INT8"):
        return RepackChoice(
            False,
            setting,
            f"this llama.cpp build uses AMX (AMX_INT8 = 1), whose repacked weights "
            f"crash ({AMX_ISSUE})",
        )
    return RepackChoice(True, setting, "no AMX in this llama.cpp build")


def system_info() -> str:
    """llama.cpp's system info line (build features such as AVX512 = 1, AMX_INT8 = 1)."""
    import llama_cpp

    raw = llama_cpp.llama_print_system_info()
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def weight_buffers(log_lines: list[str]) -> tuple[str, ...]:
    """The buffer types llama.cpp reported loading weights into, in order, without repeats."""
    found: list[str] = []
    for line in log_lines:
        for name in _BUFFER_LINE.findall(line):
            if name not in found:
                found.append(name)
    return tuple(found)


def _silence_llama_cpp(llama_cpp: Any) -> None:
    """Route llama.cpp's and ggml's log output to a no-op (verbose=False alone is not enough)."""
    global _SILENT_LOG_CALLBACK
    if _SILENT_LOG_CALLBACK is None:

        def _discard(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            if _LOAD_LOG is not None:
                _LOAD_LOG.append(text.decode("utf-8", "replace") if text else "")

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


@dataclass(frozen=True)
class LoadedLlama:
    """A constructed `llama_cpp.Llama` and the facts of how its weights were loaded."""

    llama: Any
    repack: RepackChoice
    weight_buffers: tuple[str, ...]
    system_info: str


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except (ImportError, OSError) as exc:  # a broken install (missing shared library, ...)
        raise ModelLoadError(
            f"llama-cpp-python is not usable ({exc}); reinstall it: "
            "pip install --force-reinstall llama-cpp-python"
        ) from exc
    return llama_cpp


# The most sequences `--batch` decodes together. A context holds two more (`n_seq_max`):
# the shared prompt (sequence 0) and a holder for a prompt's rest (batched.py).
MAX_SEQUENCES = 64
_LLAMA_CLASS: Any = None


def _llama_class(llama_cpp: Any) -> Any:
    """`llama_cpp.Llama` with `use_extra_bufts` settable (its constructor has no argument)
    and a context for up to MAX_SEQUENCES sequences.

    `Llama.__init__` builds `self.model_params` (and `context_params`) and loads the model
    at once; this subclass applies the choices as the params are assigned, without
    touching library globals.
    """
    global _LLAMA_CLASS
    if _LLAMA_CLASS is None:

        class _Llama(llama_cpp.Llama):  # type: ignore[misc]
            def __init__(self, *args: Any, use_extra_bufts: bool, **kwargs: Any) -> None:
                self.__dict__["_persona_extra_bufts"] = use_extra_bufts
                # llama.cpp reserves an output row per sequence in a micro-batch and
                # aborts when a context has more sequences than that (n_ctx under 66).
                rows = [kwargs.get(k) or 512 for k in ("n_batch", "n_ubatch")]
                rows.append(kwargs.get("n_ctx") or MAX_SEQUENCES + 2)  # 0: the model's
                self.__dict__["_persona_seq_max"] = min(MAX_SEQUENCES + 2, *rows)
                super().__init__(*args, **kwargs)

            @property
            def context_params(self) -> Any:
                return self.__dict__["_persona_context_params"]

            @context_params.setter
            def context_params(self, params: Any) -> None:
                # Room for batched decoding (batched.py): sequences share one KV cache of
                # n_ctx cells. A single sequence computes exactly as with n_seq_max = 1
                # (tests/unit/test_batched.py).
                params.n_seq_max = self.__dict__["_persona_seq_max"]
                params.kv_unified = True
                self.__dict__["_persona_context_params"] = params

            @property
            def model_params(self) -> Any:
                return self.__dict__["_persona_model_params"]

            @model_params.setter
            def model_params(self, params: Any) -> None:
                params.use_extra_bufts = self.__dict__["_persona_extra_bufts"]
                self.__dict__["_persona_model_params"] = params

        _LLAMA_CLASS = _Llama
    return _LLAMA_CLASS


def plain_llama(path: Path, *, repack: str = "auto", **kwargs: Any) -> Any:
    """llama-cpp-python's own `Llama(path, **kwargs)`, with the extra buffer types chosen as
    the backend chooses them (`choose_repack`): for independent references and benches,
    which must not take the crashing AMX path nor run other kernels than the backend."""
    llama_cpp = _import_llama_cpp()
    enabled = choose_repack(repack, system_info()).enabled
    return _llama_class(llama_cpp)(model_path=str(path), use_extra_bufts=enabled, **kwargs)


def construct_llama(
    path: Path, header: GGUFHeader, *, n_ctx: int, n_threads: int, repack: str = "auto"
) -> LoadedLlama:
    """A silent `llama_cpp.Llama` for the (already checked) GGUF at `path`.

    `repack` ("auto", "on", "off") decides llama.cpp's extra buffer types (see
    `choose_repack`). Should weights land in an AMX buffer although auto chose "on"
    (a build whose system info does not say AMX), the model is loaded again without.
    Raises ModelLoadError when llama-cpp-python is not usable or cannot load the file.
    """
    llama_cpp = _import_llama_cpp()
    info = system_info()
    choice = choose_repack(repack, info)
    llama, buffers = _load(llama_cpp, path, header, n_ctx, n_threads, choice.enabled)
    if choice.setting == "auto" and choice.enabled and "AMX" in buffers:
        llama.close()
        choice = RepackChoice(
            False, "auto", f"weights were put in an AMX buffer, which crashes ({AMX_ISSUE})"
        )
        llama, buffers = _load(llama_cpp, path, header, n_ctx, n_threads, False)
    return LoadedLlama(llama, choice, buffers, info)


def _load(
    llama_cpp: Any,
    path: Path,
    header: GGUFHeader,
    n_ctx: int,
    n_threads: int,
    use_extra_bufts: bool,
) -> tuple[Any, tuple[str, ...]]:
    global _LOAD_LOG
    with _LOAD_LOCK:
        _silence_llama_cpp(llama_cpp)
        _LOAD_LOG = []
        try:
            with _quiet_python_output():
                llama = _llama_class(llama_cpp)(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    # A full-size sliding-window cache: otherwise cells a reused
                    # prefix still needs may already be overwritten (Gemma 3, ...).
                    swa_full=True,
                    verbose=True,
                    use_extra_bufts=use_extra_bufts,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load {path} (architecture "
                f"{header.architecture or 'unknown'!r}): {exc}. The file may be damaged "
                f"(re-download it), or its architecture may be newer than this "
                f"llama-cpp-python {llama_cpp.__version__} (upgrade it)."
            ) from exc
        finally:
            log, _LOAD_LOG = _LOAD_LOG, None
        llama.verbose = False  # its generate() prints cache hits when verbose
    return llama, weight_buffers(log)


def llama_cpp_version() -> str:
    """The version of the llama-cpp-python that `construct_llama` loaded with."""
    import llama_cpp

    return str(llama_cpp.__version__)


def construct_vocab_llama(path: Path, header: GGUFHeader) -> LoadedLlama:
    """A silent `llama_cpp.Llama` holding only the GGUF's vocabulary (`vocab_only`), for
    tokenizing and rendering without loading the weights (training data, issue 12)."""
    global _LOAD_LOG
    llama_cpp = _import_llama_cpp()
    with _LOAD_LOCK:
        _silence_llama_cpp(llama_cpp)
        _LOAD_LOG = []
        try:
            with _quiet_python_output():
                llama = _llama_class(llama_cpp)(
                    model_path=str(path), vocab_only=True, verbose=True, use_extra_bufts=False
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not read the vocabulary of {path} (architecture "
                f"{header.architecture or 'unknown'!r}): {exc}"
            ) from exc
        finally:
            _LOAD_LOG = None
        llama.verbose = False
    choice = RepackChoice(False, "off", "vocabulary only: no weights loaded")
    return LoadedLlama(llama, choice, (), system_info())


def init_lora_adapter(llama: Any, path: Path) -> tuple[Any, str]:
    """`llama_adapter_lora_init` for the model of `llama`, quietly: (the adapter, or a NULL
    pointer when llama.cpp refused the file, and llama.cpp's last log line about it)."""
    global _LOAD_LOG
    llama_cpp = _import_llama_cpp()
    with _LOAD_LOCK:
        _silence_llama_cpp(llama_cpp)
        _LOAD_LOG = []
        try:
            adapter = llama_cpp.llama_adapter_lora_init(llama.model, str(path).encode("utf-8"))
        finally:
            log, _LOAD_LOG = _LOAD_LOG, None
    lines = [line.strip() for line in log if line.strip()]
    return adapter, (lines[-1] if lines else "")
