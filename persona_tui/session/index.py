"""The sessions in a folder: listing and summaries, the reproducibility record, deleting.

The CLI (`persona-tui sessions`) and the app (Home, the session browser) both use this
module. A session's judge scores sit beside it in a sidecar `<session stem>.judge.toml`
(written by `scoring.judgements`): the name rule lives here so listings can skip them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from persona_tui import paths
from persona_tui.errors import PersonaError, SessionError, SessionLockedError
from persona_tui.session.model import Plan, Session, Trial
from persona_tui.session.store import load_session, lock_path_for, session_lock

SIDECAR_SUFFIX = ".judge.toml"


def sidecar_path(session_path: Path) -> Path:
    """Where the judge scores of the session at `session_path` are kept."""
    return session_path.with_name(session_path.stem + SIDECAR_SUFFIX)


def is_sidecar(path: Path) -> bool:
    """True for judge sidecar files (session listings must skip them)."""
    return path.name.endswith(SIDECAR_SUFFIX)


def sidecar_lock_path(session_path: Path) -> Path:
    """The lock a judge run holds on a session's sidecar (`<sidecar>.lock`)."""
    return Path(str(sidecar_path(session_path)) + ".lock")


# ---------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class SessionSummary:
    """One line of the session list; `error` is set when the file could not be read."""

    path: Path
    id: str = ""
    scenario: str = ""
    status: str = ""
    created: str = ""
    model: str = ""
    done: int = 0
    planned: int = 0
    annotated: int = 0
    error: str = ""

    @property
    def progress(self) -> str:
        return f"{self.done}/{self.planned}"

    def as_dict(self) -> dict[str, object]:
        """The summary as `persona-tui sessions --json` prints it."""
        if self.error:
            return {"path": str(self.path), "error": self.error}
        return {
            "path": str(self.path),
            "id": self.id,
            "scenario": self.scenario,
            "status": self.status,
            "created": self.created,
            "trials": self.done,
            "planned": self.planned,
            "annotated": self.annotated,
            "model": self.model,
        }


def summarize(path: Path) -> SessionSummary:
    """Read a session file into a summary; unreadable files become a summary with `error`."""
    try:
        session = load_session(path)
    except PersonaError as error:
        return SessionSummary(path=path, id=path.stem, status="unreadable", error=str(error))
    header = session.header
    return SessionSummary(
        path=path,
        id=header.id,
        scenario=header.scenario_id,
        status=header.status,
        created=header.created,
        model=header.model.name,
        done=len(session.trials),
        planned=header.plan.total,
        annotated=sum(1 for t in session.trials if t.annotations),
    )


def session_files(folder: Path | None = None, *, newest_first: bool = False) -> list[Path]:
    """The session files (`*.toml` but judge sidecars) in a folder, by name or newest first."""
    folder = folder or paths.sessions_dir()
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("*.toml") if not is_sidecar(p)]
    if newest_first:
        return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)
    return sorted(files)


def list_sessions(folder: Path | None = None, *, newest_first: bool = True) -> list[SessionSummary]:
    """A summary of every session in the folder (default: the sessions folder)."""
    return [summarize(path) for path in session_files(folder, newest_first=newest_first)]


def resolve_session(ref: str | Path) -> Path:
    """A session file from a path, or from an id (a file name in the sessions folder)."""
    candidate = Path(ref).expanduser()
    if candidate.is_file():
        return candidate
    by_id = paths.sessions_dir() / f"{ref}.toml"
    if not candidate.suffix and "/" not in str(ref) and by_id.is_file():
        return by_id
    raise SessionError(f"{ref}: no such session file (nor a session id in {paths.sessions_dir()})")


# ---------------------------------------------------------------------------- the record


def passes(plan: Plan) -> str:
    """What the run was asked to do, in words: a pass it chose not to run is not missing."""
    if not plan.score:
        return "sampling (answer options not scored: --no-score)"
    if not plan.sample:
        return "answer option scoring (trials not sampled: --no-sample)"
    return "sampling · answer option scoring"


def reproducibility_record(session: Session) -> str:
    """What a reader needs to reproduce the session: model, scenario, sampling, seeds."""
    h = session.header
    m = h.model
    s = h.sampling
    lines = [
        f"session        {h.id}",
        f"file           {session.path}",
        f"status         {h.status} ({len(session.trials)}/{h.plan.total} trials)",
        f"passes         {passes(h.plan)}",
        f"created        {h.created} · persona-tui {h.app_version}",
        "",
        f"scenario       {h.scenario_id} ({h.scenario_path})",
        f"scenario sha256 {h.scenario_sha256}",
        "",
        f"model          {m.name}",
        f"path           {m.path}",
        f"sha256         {m.sha256}",
        f"size           {m.size_bytes:,} bytes",
        f"backend        {m.backend} {m.backend_version}",
        f"architecture   {m.architecture or '?'} · {m.quantization or '?'} · "
        f"context {m.context_length}",
        f"chat template  {m.chat_template_sha256 or 'none'} (prompt mode {h.plan.prompt_mode})",
        "",
        f"sampling       temperature {s.temperature} · top_p {s.top_p} · top_k {s.top_k} · "
        f"min_p {s.min_p} · repeat_penalty {s.repeat_penalty} · max_tokens {s.max_tokens}",
        f"plan           seed {h.plan.seed} · {h.plan.samples} samples × "
        f"{len(h.plan.conditions)} conditions × {len(h.plan.probes)} probes",
        f"conditions     {', '.join(h.plan.conditions)}",
        f"probes         {', '.join(h.plan.probes)}",
        f"stop strings   {', '.join(repr(x) for x in h.plan.stop) or 'none'}",
        *_vector_lines(session),
        "",
        "trial seeds",
    ]
    for trial in _seed_order(session):
        lines.append(f"  {trial.condition} · {trial.probe} #{trial.sample}: {trial.seed}")
    return "\n".join(lines)


def _vector_lines(session: Session) -> list[str]:
    """The traits measured and the steered conditions, with their vectors' sha256 (none: no
    lines, so records of sessions without them read as before)."""
    lines = [
        f"trait          {t.trait}: layer {t.layer} · norm {t.norm:g} · {t.vectors} "
        f"(sha256 {t.sha256})"
        for t in session.header.traits.values()
    ]
    lines += [
        f"steering       {s.condition}: {s.trait} × {s.scale:g} at layer {s.layer} · "
        f"{s.vectors} (sha256 {s.sha256})"
        for s in session.header.steering.values()
    ]
    return ["", *lines] if lines else []


def reproducibility_data(session: Session) -> dict[str, Any]:
    """The reproducibility record as plain data (`persona-tui sessions --record --json`)."""
    h = session.header
    m = h.model
    return {
        "session": h.id,
        "file": str(session.path),
        "status": h.status,
        "trials": len(session.trials),
        "planned": h.plan.total,
        "created": h.created,
        "app_version": h.app_version,
        "scenario": {"id": h.scenario_id, "path": h.scenario_path, "sha256": h.scenario_sha256},
        "model": {
            "name": m.name,
            "path": m.path,
            "sha256": m.sha256,
            "size_bytes": m.size_bytes,
            "backend": m.backend,
            "backend_version": m.backend_version,
            "architecture": m.architecture,
            "quantization": m.quantization,
            "context_length": m.context_length,
            "chat_template_sha256": m.chat_template_sha256,
        },
        "prompt_mode": h.plan.prompt_mode,
        "sampling": asdict(h.sampling),
        "plan": {
            "seed": h.plan.seed,
            "samples": h.plan.samples,
            "conditions": list(h.plan.conditions),
            "probes": list(h.plan.probes),
            "stop": list(h.plan.stop),
            "sample": h.plan.sample,
            "score": h.plan.score,
        },
        "traits": {k: asdict(v) for k, v in h.traits.items()},
        "steering": {k: asdict(v) for k, v in h.steering.items()},
        "trial_seeds": [
            {"condition": t.condition, "probe": t.probe, "sample": t.sample, "seed": t.seed}
            for t in _seed_order(session)
        ],
    }


def _seed_order(session: Session) -> list[Trial]:
    return sorted(session.trials, key=lambda t: (t.condition, t.probe, t.sample))


# ---------------------------------------------------------------------------- deleting


def delete_session(path: Path) -> list[Path]:
    """Delete a session file with its judge sidecar and lock files; returns what was removed.

    Refused (SessionLockedError) while another process writes the session or a judge run
    scores it; the files are removed while holding both locks. Unreadable files can be
    deleted too.
    """
    removed: list[Path] = []
    with session_lock(path), _sidecar_lock(path):
        for file in (path, sidecar_path(path)):
            if _unlink(file):
                removed.append(file)
    for file in (sidecar_lock_path(path), lock_path_for(path)):
        _unlink(file)
    return removed


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as error:
        raise SessionError(f"cannot delete {path}: {error.strerror or error}") from error
    return True


@contextlib.contextmanager
def _sidecar_lock(session_path: Path) -> Iterator[None]:
    from filelock import FileLock, Timeout

    lock = FileLock(str(sidecar_lock_path(session_path)), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SessionLockedError(
            f"{sidecar_path(session_path)}: a `persona-tui judge` run is scoring this session; "
            "wait for it to finish"
        ) from None
    try:
        yield
    finally:
        lock.release()
