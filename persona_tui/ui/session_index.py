"""Summaries of the saved sessions for Home and the session browser (no widgets here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from persona_tui import paths
from persona_tui.errors import PersonaError
from persona_tui.scoring.judgements import is_sidecar
from persona_tui.session.model import Session
from persona_tui.session.store import load_session


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


def list_sessions(folder: Path | None = None) -> list[SessionSummary]:
    """Every `*.toml` session in the folder, newest first."""
    folder = folder or paths.sessions_dir()
    if not folder.is_dir():
        return []
    files = sorted(
        (p for p in folder.glob("*.toml") if not is_sidecar(p)),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    return [summarize(path) for path in files]


def reproducibility_record(session: Session) -> str:
    """What a reader needs to reproduce the session: model, scenario, sampling, seeds."""
    h = session.header
    m = h.model
    s = h.sampling
    lines = [
        f"session        {h.id}",
        f"file           {session.path}",
        f"status         {h.status} ({len(session.trials)}/{h.plan.total} trials)",
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
        "",
        "trial seeds",
    ]
    for trial in sorted(session.trials, key=lambda t: (t.condition, t.probe, t.sample)):
        lines.append(f"  {trial.condition} · {trial.probe} #{trial.sample}: {trial.seed}")
    return "\n".join(lines)
