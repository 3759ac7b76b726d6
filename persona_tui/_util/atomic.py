"""Atomic file replacement: a reader (or a crash) sees the old file or the new one, never half.

The new content goes to a temporary file in the target's own folder (so `os.replace` is a
rename within one file system), is flushed and fsynced, renamed over the target, and the
folder is fsynced so the rename itself survives a power cut.

Errors: these helpers raise the plain `OSError` they hit, after removing their temporary
file; the target is then untouched. Callers wrap it in their own typed error (SessionError,
ConfigError, ...) and can use `describe_os_error` for the human part of the message.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_TEMP_SUFFIX = ".tmp"


def temp_prefix(path: Path) -> str:
    """The name prefix of the temporary files written next to `path` (hidden: a leading dot)."""
    return f".{path.name}."


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably; the file gets permission bits `mode`.

    On any OSError (disk full, permission denied, ...) the temporary file is removed, the
    previous content of `path` is intact, and the OSError propagates.
    """
    folder = path.parent
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=temp_prefix(path), suffix=_TEMP_SUFFIX)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)  # exact bits, independent of the umask
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_directory(folder)


def atomic_write_text(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace `path` with `text` encoded as UTF-8 (newlines written as given), atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary path next to `path` for code that writes a file itself (a downloader, an
    assembler); when the block ends normally it is fsynced and renamed over `path`.

    On any exception (OSError or the writer's own) the temporary file is removed and `path`
    is untouched.
    """
    folder = path.parent
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=temp_prefix(path), suffix=_TEMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(temp_name)
        written = os.open(temp_name, os.O_RDONLY)
        try:
            os.fsync(written)
        finally:
            os.close(written)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_directory(folder)


def fsync_directory(folder: Path) -> None:
    """Make a rename in `folder` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Delete temporary files a killed writer of `path` left behind; returns what was removed.

    Only call this while holding the writer's lock for `path`: otherwise the temporary file
    of a write in progress could be removed under it.
    """
    removed: list[Path] = []
    prefix = temp_prefix(path)
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return removed
    for candidate in candidates:
        name = candidate.name
        if name.startswith(prefix) and name.endswith(_TEMP_SUFFIX):
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "the folder does not exist",
    errno.EIO: "an input/output error occurred (failing disk or lost network drive?)",
}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _REASONS[errno.EDQUOT] = "the disk quota is exceeded"


def describe_os_error(exc: OSError) -> str:
    """A short human reason for `exc` ("the disk is full"), for use inside a typed error."""
    reason = _REASONS.get(exc.errno) if exc.errno is not None else None
    if reason is None:
        reason = exc.strerror or str(exc) or type(exc).__name__
    return reason
