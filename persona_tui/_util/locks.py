"""An exclusive lock on a file that its holder's death releases (flock through filelock).

The kernel drops a flock(2) lock when its holder dies, even by SIGKILL, so a crashed
holder never leaves a stale lock behind. The holder's pid is written beside the lock
(`<lock>.pid`), so whoever finds it held can say who holds it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


class LockHeld(Exception):
    """Another holder has the lock; `pid` is its process id as recorded ("" if unknown)."""

    def __init__(self, lock_path: Path, pid: str) -> None:
        super().__init__(f"{lock_path} is held (pid {pid or 'unknown'})")
        self.lock_path = lock_path
        self.pid = pid


def pid_path_for(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".pid")


@contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold `lock_path` (created if needed) without waiting; LockHeld if another holds it.

    OSError when the lock file cannot be created (the caller names what it was locking).
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path), timeout=0, mode=0o644, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise LockHeld(lock_path, _read_pid(pid_path_for(lock_path))) from None
    try:
        with suppress(OSError):  # only the message to a second holder loses the pid
            pid_path_for(lock_path).write_text(f"{os.getpid()}\n", encoding="utf-8")
        yield
    finally:
        lock.release()


def _read_pid(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return text if text.isdigit() else ""
