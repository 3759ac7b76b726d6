"""A read cache of sessions for analysis, so repeated exports and reports start fast.

Parsing a large session TOML dominates `export` and `report` (a 10,000-trial, 25 MB file
takes seconds with tomllib), and analysis re-reads the same unchanged files again and
again. The first read stores what the analysis uses — the session without the exact
prompts, plus its judge scores — as JSON in the user cache folder
(`<cache>/analysis/`, files mode 0600 like the sessions themselves). An entry is used only
while the session file and its sidecar have exactly the size, mtime and inode they had
when it was written; anything else reads the files again. Sessions from the cache have
`prompt == ""` for every trial: use `persona_tui.session.store.load_session` when you need them.
Scored option cells (one per condition × probe) keep their prompts: the options export
needs them, and there are few.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from persona_tui import __version__, paths
from persona_tui._util.atomic import atomic_write_bytes
from persona_tui._util.textdata import DataFileError, loads_json
from persona_tui.scoring.judgements import (
    JudgeFile,
    Judgement,
    Rubric,
    load_judge_file,
    sidecar_path,
)
from persona_tui.session.model import (
    AdapterRecord,
    Annotation,
    OptionCell,
    OptionScore,
    Plan,
    Session,
    SessionHeader,
    SteeringRecord,
    TraitRecord,
    Trial,
)
from persona_tui.session.store import load_session
from persona_tui.values import ModelInfo, SamplingParams

CACHE_VERSION = 6


def cache_folder() -> Path:
    return paths.cache_dir() / "analysis"


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _entry_path(session_path: Path) -> Path:
    digest = hashlib.sha256(str(session_path.resolve()).encode("utf-8")).hexdigest()[:40]
    return cache_folder() / f"{digest}.json"


def load_for_analysis(session_path: Path, use_cache: bool = True) -> tuple[Session, JudgeFile]:
    """The session (prompts left out when cached) and its judge scores.

    Raises SessionError like `load_session` for unreadable files; cache problems are never
    errors (the files are simply read again).
    """
    if not use_cache:
        session = load_session(session_path)
        return session, load_judge_file(session.path, session.header.id)
    key = [
        CACHE_VERSION,
        __version__,
        str(session_path.resolve()),
        _stamp(session_path),
        _stamp(sidecar_path(session_path)),
    ]
    entry = _entry_path(session_path)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, IndexError, DataFileError):
        data = loads_json(entry.read_bytes(), entry)
        if data["key"] == key:
            return _decode(data, session_path)
    session = load_session(session_path)
    judge_file = load_judge_file(session.path, session.header.id)
    if key[3] is not None and _stamp(session_path) == key[3]:  # unchanged while we read it
        with contextlib.suppress(OSError, ValueError, TypeError):
            entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            blob = json.dumps(_encode(key, session, judge_file), ensure_ascii=False)
            atomic_write_bytes(entry, blob.encode("utf-8", "surrogatepass"))
    return session, judge_file


# ------------------------------------------------------------------ encoding


def _encode(key: list[Any], session: Session, judge_file: JudgeFile) -> dict[str, Any]:
    h = session.header
    header = dataclasses.asdict(h)
    return {
        "key": key,
        "header": header,
        "trials": [
            [
                t.condition,
                t.probe,
                t.sample,
                t.seed,
                t.response,
                t.finish_reason,
                t.prompt_tokens,
                t.completion_tokens,
                t.started,
                t.seconds,
                list(t.turn_responses),
                [
                    [a.annotator, a.time, a.label, a.scores, a.note, a.blind_seed]
                    for a in t.annotations
                ],
                t.replicate,
                t.projections,
            ]
            for t in session.trials
        ],
        "option_cells": [
            [
                c.condition,
                c.probe,
                c.prompt,
                c.prompt_tokens,
                c.seconds,
                c.batch,
                [
                    [o.id, o.label, o.text, o.logprob, o.n_tokens, list(o.token_logprobs)]
                    for o in c.options
                ],
                c.replicate,
                c.projections,
            ]
            for c in session.option_cells
        ],
        "rubrics": [
            [sha, r.id, r.template, r.description] for sha, r in judge_file.rubrics.items()
        ],
        "judgements": [
            [
                j.condition,
                j.probe,
                j.sample,
                j.rubric,
                j.rubric_sha256,
                j.judge_model,
                j.judge_sha256,
                j.judge_backend,
                j.method,
                j.score,
                j.p_numbers,
                j.time,
            ]
            for j in judge_file.judgements
        ],
    }


def _decode(data: dict[str, Any], session_path: Path) -> tuple[Session, JudgeFile]:
    h = data["header"]
    header = SessionHeader(
        id=h["id"],
        scenario_id=h["scenario_id"],
        scenario_sha256=h["scenario_sha256"],
        scenario_source=h["scenario_source"],
        scenario_path=h["scenario_path"],
        created=h["created"],
        status=h["status"],
        model=ModelInfo(**h["model"]),
        sampling=SamplingParams(**h["sampling"]),
        plan=Plan(
            conditions=tuple(h["plan"]["conditions"]),
            probes=tuple(h["plan"]["probes"]),
            samples=h["plan"]["samples"],
            seed=h["plan"]["seed"],
            prompt_mode=h["plan"]["prompt_mode"],
            stop=tuple(h["plan"]["stop"]),
            batch=h["plan"]["batch"],
            batch_cells=h["plan"]["batch_cells"],
            sample=h["plan"]["sample"],
            score=h["plan"]["score"],
            replicates=h["plan"]["replicates"],
            replicated=tuple(h["plan"]["replicated"]),
        ),
        app_version=h["app_version"],
        chat_template=h["chat_template"],
        adapters=tuple(AdapterRecord(**a) for a in h["adapters"]),
        traits={k: TraitRecord(**v) for k, v in h["traits"].items()},
        steering={k: SteeringRecord(**v) for k, v in h["steering"].items()},
    )
    trials = [
        Trial(
            condition=row[0],
            probe=row[1],
            sample=row[2],
            seed=row[3],
            prompt="",
            response=row[4],
            finish_reason=row[5],
            prompt_tokens=row[6],
            completion_tokens=row[7],
            started=row[8],
            seconds=row[9],
            turn_responses=tuple(row[10]),
            annotations=tuple(Annotation(a[0], a[1], a[2], a[3], a[4], a[5]) for a in row[11]),
            replicate=row[12],
            projections=row[13],
        )
        for row in data["trials"]
    ]
    option_cells = [
        OptionCell(
            condition=row[0],
            probe=row[1],
            prompt=row[2],
            prompt_tokens=row[3],
            seconds=row[4],
            batch=row[5],
            options=tuple(OptionScore(o[0], o[1], o[2], o[3], o[4], tuple(o[5])) for o in row[6]),
            replicate=row[7],
            projections=row[8],
        )
        for row in data["option_cells"]
    ]
    rubrics = {r[0]: Rubric(r[1], r[2], r[3]) for r in data["rubrics"]}
    judgements = (Judgement(*row) for row in data["judgements"])
    session = Session(header, trials, session_path, option_cells)
    return session, JudgeFile.of(header.id, rubrics, judgements)
