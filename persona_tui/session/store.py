"""The session store: a session file kept up to date, atomically and under a lock.

The store writes the file atomically after every trial and every annotation, holding a
lock so that no two processes write one session; `load_session` reads one without a
lock. See docs/session-format.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from persona_tui._util.atomic import atomic_write_bytes, describe_os_error, remove_stale_temp_files
from persona_tui.errors import SessionError, SessionLockedError
from persona_tui.session.schema import STATUSES

if TYPE_CHECKING:
    from filelock import BaseFileLock
from persona_tui.session.model import (
    Annotation,
    CellKey,
    OptionCell,
    Session,
    SessionHeader,
    SessionStatus,
    SteeringRecord,
    TraitRecord,
    Trial,
    TrialKey,
)
from persona_tui.session.read import projection_problem, read_session_file
from persona_tui.session.write import render_header, render_option_cell, render_trial

# ---------------------------------------------------------------------------- store

SESSION_FILE_MODE = 0o600


def load_session(path: Path) -> Session:
    """Read and validate a session file without locking it (viewing, analysis, export).

    Raises SessionError naming the file and the key path, or line:column for TOML syntax.
    """
    return read_session_file(path)


def lock_path_for(path: Path) -> Path:
    """The lock file that guards the session at `path` (`<session file>.lock`, left in place)."""
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def session_lock(path: Path) -> Iterator[None]:
    """Hold the lock of the session at `path` without reading it (SessionLockedError if held)."""
    lock = _acquire_lock(path)
    try:
        yield
    finally:
        lock.release()


def _acquire_lock(path: Path) -> BaseFileLock:
    # flock(2) underneath: the kernel drops the lock when its holder dies, even by SIGKILL.
    from filelock import FileLock, Timeout

    lock_path = lock_path_for(path)
    lock = FileLock(str(lock_path), timeout=0, mode=0o600, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise SessionLockedError(
            f"session {path} is being written by another process (lock file {lock_path}); "
            "close it there first"
        ) from None
    except OSError as exc:
        raise SessionError(
            f"cannot lock session {path} (lock file {lock_path}): {describe_os_error(exc)}"
        ) from exc
    return lock


class SessionStore:
    """The one writer of a session file: holds its lock and saves after every change.

    Each trial's `[[trials]]` text is cached, so a save renders only the header or the
    changed trial and rewrites the file from the cached chunks (see bench/bench_autosave.py).
    The in-memory state always equals the last successful save: if a save fails, the change
    is not applied and the caller may retry. Methods are thread-safe (a runner thread saves
    trials while the UI annotates).
    """

    def __init__(
        self,
        path: Path,
        header: SessionHeader,
        trials: list[Trial],
        lock: BaseFileLock,
        option_cells: list[OptionCell] | None = None,
    ) -> None:
        """Use `create` or `open`; this assumes the lock is held."""
        self._path = path
        self._lock: BaseFileLock | None = lock
        self._mutex = threading.Lock()
        self._header = header
        self._header_chunk = render_header(header).encode("utf-8")
        self._trials: dict[TrialKey, Trial] = {}
        self._chunks: dict[TrialKey, bytes] = {}
        for trial in trials:
            self._trials[trial.key] = trial
            self._chunks[trial.key] = render_trial(trial).encode("utf-8")
        # Scored option cells by (condition, probe, replicate), written after the trials.
        self._cells: dict[CellKey, OptionCell] = {}
        self._cell_chunks: dict[CellKey, bytes] = {}
        for cell in option_cells or ():
            key = cell.key
            self._cells[key] = cell
            self._cell_chunks[key] = render_option_cell(cell).encode("utf-8")

    @classmethod
    def create(cls, path: Path, header: SessionHeader) -> SessionStore:
        """Start a new session file at `path` (which must not exist) and lock it."""
        if path.exists():
            raise SessionError(_exists_message(path))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SessionError(
                f"cannot create the folder {path.parent} for session {path}: "
                f"{describe_os_error(exc)}"
            ) from exc
        lock = _acquire_lock(path)
        try:
            if path.exists():  # created by another process between the check and the lock
                raise SessionError(_exists_message(path))
            store = cls(path, header, [], lock)
            with store._mutex:
                store._write([store._header_chunk], saved_trials=None)
            return store
        except BaseException:
            lock.release()
            raise

    @classmethod
    def open(cls, path: Path) -> SessionStore:
        """Load an existing session and lock it for writing (resume, annotate)."""
        if not path.is_file():  # checked before locking, so no stray lock file is created
            problem = "not a regular file" if path.exists() else "no such session file"
            raise SessionError(f"{path}: {problem}")
        lock = _acquire_lock(path)
        try:
            session = read_session_file(path)
            remove_stale_temp_files(path)  # safe: we hold the lock, no write is in progress
            return cls(path, session.header, session.trials, lock, session.option_cells)
        except BaseException:
            lock.release()
            raise

    @property
    def path(self) -> Path:
        return self._path

    @property
    def session(self) -> Session:
        """A snapshot of the current state; trials in the order they finished."""
        with self._mutex:
            return Session(
                header=self._header,
                trials=list(self._trials.values()),
                path=self._path,
                option_cells=list(self._cells.values()),
            )

    def save_trial(self, trial: Trial) -> None:
        """Add a finished trial, or replace the one with the same key (it moves to the end)."""
        with self._mutex:
            self._check_open()
            self._check_projections(trial.projections)
            key = trial.key
            chunk = render_trial(trial).encode("utf-8")
            if key in self._chunks:
                others = [c for k, c in self._chunks.items() if k != key]
            else:
                others = list(self._chunks.values())
            self._write(
                [self._header_chunk, *others, chunk, *self._cell_chunks.values()],
                saved_trials=len(self._chunks),
            )
            self._trials.pop(key, None)
            self._chunks.pop(key, None)
            self._trials[key] = trial
            self._chunks[key] = chunk

    def save_option_cell(self, cell: OptionCell) -> None:
        """Add a scored (condition, probe, replicate) cell of options, or replace the one
        it repeats."""
        with self._mutex:
            self._check_open()
            self._check_projections(cell.projections)
            key = cell.key
            chunk = render_option_cell(cell).encode("utf-8")
            others = [c for k, c in self._cell_chunks.items() if k != key]
            self._write(
                [self._header_chunk, *self._chunks.values(), *others, chunk],
                saved_trials=len(self._chunks),
            )
            self._cells.pop(key, None)
            self._cell_chunks.pop(key, None)
            self._cells[key] = cell
            self._cell_chunks[key] = chunk

    def annotate(self, key: TrialKey, annotation: Annotation) -> Trial:
        """Set `annotation.annotator`'s annotation on a trial (replacing theirs); returns it."""
        with self._mutex:
            self._check_open()
            trial = self._trials.get(key)
            if trial is None:
                raise SessionError(
                    f"session {self._path} has no trial with condition {key.condition!r}, "
                    f"probe {key.probe!r}, sample {key.sample}"
                )
            annotations: list[Annotation] = []
            replaced = False
            for existing in trial.annotations:
                if existing.annotator != annotation.annotator:
                    annotations.append(existing)
                elif not replaced:
                    annotations.append(annotation)
                    replaced = True
            if not replaced:
                annotations.append(annotation)
            updated = dataclasses.replace(trial, annotations=tuple(annotations))
            chunk = render_trial(updated).encode("utf-8")
            parts = [chunk if k == key else c for k, c in self._chunks.items()]
            self._write(
                [self._header_chunk, *parts, *self._cell_chunks.values()],
                saved_trials=len(self._chunks),
            )
            self._trials[key] = updated
            self._chunks[key] = chunk
            return updated

    def set_projections(self, key: TrialKey | CellKey, values: dict[str, float]) -> None:
        """Set the trait projections of a saved trial (TrialKey) or option cell (CellKey),
        replacing the ones of the same traits (others are kept), and save: a later pass
        measuring an existing session stores its values as an annotation edit does."""
        self.set_projections_of([(key, values)])

    def set_projections_of(
        self, items: Sequence[tuple[TrialKey | CellKey, dict[str, float]]]
    ) -> None:
        """`set_projections` for several trials and cells at once, in one save (the
        projection pass saves a prompt's trials and its cell together)."""
        with self._mutex:
            self._check_open()
            trials = dict(self._trials)
            chunks = dict(self._chunks)
            cells = dict(self._cells)
            cell_chunks = dict(self._cell_chunks)
            for key, values in items:
                self._check_projections(values)
                if isinstance(key, TrialKey):
                    trial = trials.get(key)
                    if trial is None:
                        raise SessionError(f"session {self._path} has no trial {key}")
                    trial = dataclasses.replace(trial, projections={**trial.projections, **values})
                    trials[key] = trial
                    chunks[key] = render_trial(trial).encode("utf-8")
                    continue
                cell = cells.get(key)
                if cell is None:
                    raise SessionError(f"session {self._path} has no option cell {tuple(key)}")
                cell = dataclasses.replace(cell, projections={**cell.projections, **values})
                cells[key] = cell
                cell_chunks[key] = render_option_cell(cell).encode("utf-8")
            self._write(
                [self._header_chunk, *chunks.values(), *cell_chunks.values()],
                saved_trials=len(chunks),
            )
            self._trials, self._chunks = trials, chunks
            self._cells, self._cell_chunks = cells, cell_chunks

    def set_traits(self, traits: dict[str, TraitRecord]) -> None:
        """Record the traits measured (`[traits.<id>]`, added to or replacing the ones of the
        same id) and save; a trait must be recorded before projections on it are stored."""
        self._save_header(
            lambda header: dataclasses.replace(header, traits={**header.traits, **traits})
        )

    def set_steering(self, steering: dict[str, SteeringRecord]) -> None:
        """Record steered conditions (`[steering.<condition>]`, condition -> record) and save."""
        self._save_header(
            lambda header: dataclasses.replace(header, steering={**header.steering, **steering})
        )

    def set_status(self, status: SessionStatus) -> None:
        """Record the run's status ("running", "complete", "interrupted") and save."""
        if status not in STATUSES:
            raise SessionError(f"invalid session status {status!r}; expected one of {STATUSES}")
        self._save_header(lambda header: dataclasses.replace(header, status=status))

    def set_choices(self, *, sample: bool, score: bool) -> None:
        """Record what the run does from now on (`[plan]`'s `sample` and `score`) and save:
        a resume told `--score`, `--no-sample`, ... changes the session's choice."""
        self._save_header(
            lambda header: dataclasses.replace(
                header, plan=dataclasses.replace(header.plan, sample=sample, score=score)
            )
        )

    def _save_header(self, change: Callable[[SessionHeader], SessionHeader]) -> None:
        with self._mutex:
            self._check_open()
            header = change(self._header)
            header_chunk = render_header(header).encode("utf-8")
            self._write(
                [header_chunk, *self._chunks.values(), *self._cell_chunks.values()],
                saved_trials=len(self._chunks),
            )
            self._header = header
            self._header_chunk = header_chunk

    def close(self) -> None:
        """Release the lock; the store cannot save afterwards. Safe to call twice."""
        with self._mutex:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._lock is not None else "closed"
        return f"SessionStore({str(self._path)!r}, {len(self._trials)} trials, {state})"

    def _check_projections(self, values: dict[str, float]) -> None:
        for trait in values:
            problem = projection_problem(trait, self._header)
            if problem is not None:
                raise SessionError(f"cannot save session {self._path}: {problem}")

    def _check_open(self) -> None:
        if self._lock is None:
            raise SessionError(f"session {self._path} was closed; open it again to change it")

    def _write(self, parts: list[bytes], saved_trials: int | None) -> None:
        try:
            atomic_write_bytes(self._path, b"".join(parts), SESSION_FILE_MODE)
        except OSError as exc:
            if saved_trials is None:
                intact = "nothing was written"
            else:
                intact = f"the previous save ({saved_trials} trials) is intact"
            raise SessionError(
                f"could not save session {self._path}: {describe_os_error(exc)}; {intact}. "
                "Fix the cause and try again (a run continues with: "
                f"persona-tui run --resume {self._path})"
            ) from exc


def _exists_message(path: Path) -> str:
    return (
        f"session file {path} already exists; resume it with --resume {path} "
        "or choose another --out path"
    )
