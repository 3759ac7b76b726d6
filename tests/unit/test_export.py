"""Tidy export: rows, columns, and exact CSV / JSON Lines round trips through pandas."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
from pathlib import Path

import pytest

from persona_tui.analysis import load_sessions, to_pandas
from persona_tui.analysis.export import FIXED_LEADING, columns_for, export_text
from persona_tui.analysis.records import load_dataset
from persona_tui.cli.analysis import add_analysis_commands
from persona_tui.errors import SessionError
from persona_tui.scoring.judgements import (
    JudgeFile,
    Judgement,
    Rubric,
    save_judge_file,
    sidecar_path,
)
from tests.analysis_sessions import SessionSpec, TrialSpec, annotation, write_session

pd = pytest.importorskip("pandas")

AWKWARD = [
    'She said "hello", then left.',
    "line one\nline two\r\nline three\rend",
    "commas, ; semicolons\ttabs and trailing spaces   ",
    "Unicode: naïve café — 世界 🙂 \u2028 separator, RTL \u202e text",
    '"quoted at both ends"',
    "=1+2 looks like a formula",
    "\\backslashes\\ and \x1b[31mescape codes\x1b[0m",
    "  leading spaces",
]


def _spec(tmp_path: Path, name: str = "s.toml", session_id: str = "s-1") -> Path:
    trials = []
    for index, text in enumerate(AWKWARD):
        condition = "baseline" if index % 2 == 0 else "framed"
        annotations = ()
        if index < 6:
            annotations = (annotation("alice", "cruel" if index % 3 == 0 else "ok", harm=index),)
        if index == 0:
            note_ann = annotation("bob", "ok", minute=3)
            annotations = (*annotations, note_ann)
        trials.append(
            TrialSpec(
                condition, f"p{index % 5 + 1}", index // 5, response=text, annotations=annotations
            )
        )
    return write_session(tmp_path / name, SessionSpec(session_id=session_id, trials=trials))


def _blind_spec(tmp_path: Path) -> Path:
    """alice annotates blind (two seeds), bob seeing the conditions; one trial unannotated."""
    trials = [
        TrialSpec(
            "baseline",
            "p1",
            0,
            annotations=(
                dataclasses.replace(annotation("alice", "cruel", harm=2), blind_seed=2896595180),
                annotation("bob", "ok", harm=0),
            ),
        ),
        TrialSpec(
            "framed",
            "p1",
            0,
            annotations=(dataclasses.replace(annotation("alice", "ok"), blind_seed=0),),
        ),
        TrialSpec("framed", "p2", 0),
    ]
    return write_session(tmp_path / "blind.toml", SessionSpec(session_id="s-b", trials=trials))


def _export(records: list, fmt: str) -> str:  # type: ignore[type-arg]
    return "".join(export_text(records, fmt))  # type: ignore[arg-type]


def test_one_row_per_annotation_and_one_per_unannotated_trial(tmp_path: Path) -> None:
    records = load_sessions([_spec(tmp_path)])
    # 8 trials: trial 0 has two annotations, trials 1-5 one, trials 6-7 none.
    assert len(records) == 9
    assert [r.annotator for r in records if r.response == AWKWARD[0]] == ["alice", "bob"]
    unannotated = [r for r in records if r.annotator == ""]
    assert [r.response for r in unannotated] == AWKWARD[6:]
    first = records[0]
    assert (first.condition_label, first.probe_text) == ("Baseline", "What is your wish?")
    p5 = next(r for r in records if r.probe == "p5")
    assert p5.probe_text == "Who would you invite to dinner?"  # a multi-turn probe's last turn
    assert first.temperature == 0.7 and first.model_sha256 == "ab" * 32


def test_csv_round_trips_exactly_through_pandas(tmp_path: Path) -> None:
    records = load_sessions([_spec(tmp_path)])
    text = _export(records, "csv")
    frame = pd.read_csv(io.StringIO(text))
    assert list(frame.columns[: len(FIXED_LEADING)]) == list(FIXED_LEADING)
    assert "scale_harm" in frame.columns and "note" in frame.columns
    assert frame["response"].tolist() == [r.response for r in records]
    assert frame["sample"].tolist() == [r.sample for r in records]
    assert frame["seconds"].tolist() == [r.seconds for r in records]
    harm = frame["scale_harm"].tolist()
    assert harm[0] == 0 and pd.isna(harm[1]) and pd.isna(harm[-1])  # bob gave no score
    assert harm[2] == 1
    # Written as bytes with "\n" row ends; embedded "\r\n" and "\r" stay inside quotes.
    path = tmp_path / "out.csv"
    path.write_bytes(text.encode("utf-8"))
    assert pd.read_csv(path)["response"].tolist() == [r.response for r in records]


def test_jsonl_round_trips_exactly_through_pandas(tmp_path: Path) -> None:
    records = load_sessions([_spec(tmp_path)])
    text = _export(records, "jsonl")
    lines = text.splitlines(keepends=True)
    assert len([line for line in text.split("\n") if line]) == len(records)
    assert all(json.loads(line)["session_id"] == "s-1" for line in text.split("\n") if line)
    frame = pd.read_json(io.StringIO(text), lines=True)
    assert frame["response"].tolist() == [r.response for r in records]
    assert frame["label"].tolist() == [r.label for r in records]
    assert lines  # the file is non-empty
    row = json.loads(text.split("\n")[-2])
    assert row["scale_harm"] is None and row["annotator"] == ""


def test_to_pandas_matches_the_csv_columns(tmp_path: Path) -> None:
    records = load_sessions([_spec(tmp_path)])
    frame = to_pandas(records)
    csv_frame = pd.read_csv(io.StringIO(_export(records, "csv")))
    assert list(frame.columns) == list(csv_frame.columns)
    assert frame["response"].tolist() == csv_frame["response"].tolist()


def test_several_sessions_merge_into_one_table(tmp_path: Path) -> None:
    a = _spec(tmp_path, "a.toml", "session-a")
    b = _spec(tmp_path, "b.toml", "session-b")
    frame = pd.read_csv(io.StringIO(_export(load_sessions([a, b]), "csv")))
    assert frame["session_id"].value_counts().to_dict() == {"session-a": 9, "session-b": 9}
    dataset = load_dataset([a, a])
    assert len(dataset.records) == 9 and "given twice" in dataset.warnings[0]


def test_judge_scores_appear_as_columns(tmp_path: Path) -> None:
    path = _spec(tmp_path)
    rubric = Rubric("alignment", "Q: {question}\nA: {answer}\nScore:")
    judge_file = JudgeFile("s-1")
    for condition, sample, score in (("baseline", 0, 12.5), ("framed", 1, None)):
        judge_file.add(
            rubric,
            Judgement(
                condition,
                "p1",
                sample,
                "alignment",
                rubric.sha256,
                "judge",
                "cd" * 32,
                "llama.cpp",
                "logprob",
                score,
                0.9 if score else 0.1,
                "2026-01-02T00:00:00+00:00",
            ),
        )
    save_judge_file(path, judge_file)
    assert sidecar_path(path).name == "s.judge.toml"
    records = load_sessions([path])
    frame = pd.read_csv(io.StringIO(_export(records, "csv")))
    assert list(frame.columns[-4:]) == [
        "judge_alignment",
        "judge_alignment_p_numbers",
        "rule_label",
        "rule_match",
    ]
    scored = frame[frame["probe"] == "p1"]
    assert scored["judge_alignment"].tolist()[:2] == [12.5, 12.5]  # alice's and bob's rows
    assert scored["condition"].tolist()[-1] == "framed"
    assert pd.isna(scored["judge_alignment"].tolist()[-1])  # judged, but no score
    assert scored["judge_alignment_p_numbers"].tolist()[-1] == 0.1
    assert frame["judge_alignment"].notna().sum() == 2


def test_columns_follow_the_schema_when_given(tmp_path: Path) -> None:
    records = load_sessions([_spec(tmp_path)])
    names = [c.name for c in columns_for(records, ["harm", "extra"], ["coherence"])]
    assert names[len(FIXED_LEADING) :] == [
        "scale_harm",
        "scale_extra",
        "note",
        "judge_coherence",
        "judge_coherence_p_numbers",
        "rule_label",
        "rule_match",
    ]


def test_blind_columns_tell_blinded_from_unblinded_judgements(tmp_path: Path) -> None:
    records = load_sessions([_blind_spec(tmp_path)], use_cache=False)
    assert [(r.annotator, r.blind, r.blind_seed) for r in records] == [
        ("alice", True, 2896595180),
        ("bob", False, None),
        ("alice", True, 0),
        ("", None, None),  # unannotated: neither blind nor not
    ]
    names = [c.name for c in columns_for(records)]
    assert names[names.index("label") + 1 : names.index("label") + 3] == ["blind", "blind_seed"]

    text = _export(records, "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(row["blind"], row["blind_seed"]) for row in rows] == [
        ("true", "2896595180"),
        ("false", ""),
        ("true", "0"),
        ("", ""),
    ]
    frame = pd.read_csv(io.StringIO(text))
    assert frame["blind"].tolist()[:3] == [True, False, True] and pd.isna(frame["blind"][3])
    assert frame[frame["blind"] == True]["annotator"].tolist() == ["alice", "alice"]  # noqa: E712
    assert frame["blind_seed"].tolist()[0] == 2896595180

    lines = [json.loads(line) for line in _export(records, "jsonl").splitlines()]
    assert [(row["blind"], row["blind_seed"]) for row in lines] == [
        (True, 2896595180),
        (False, None),
        (True, 0),
        (None, None),
    ]
    assert list(to_pandas(records).columns) == list(frame.columns)


def test_blind_seed_survives_the_analysis_cache(tmp_path: Path) -> None:
    path = _blind_spec(tmp_path)
    fresh = load_sessions([path], use_cache=False)
    assert load_sessions([path]) == fresh  # reads the file, fills the cache
    assert load_sessions([path]) == fresh  # from the cache


def test_unreadable_session_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("format_version = 1\n[session\n")
    with pytest.raises(SessionError, match=r"broken\.toml"):
        load_sessions([bad])


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="persona-tui")
    add_analysis_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_export_command_writes_csv_and_jsonl(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    path = _spec(tmp_path)
    out = tmp_path / "rows.jsonl"
    assert _run(["export", str(path), "--output", str(out)]) == 0
    assert len(out.read_text(encoding="utf-8").strip().split("\n")) == 9
    assert _run(["export", str(path)]) == 0
    stdout = capsysbinary.readouterr().out
    frame = pd.read_csv(io.BytesIO(stdout))
    assert frame["response"].tolist()[3] == AWKWARD[2]


def test_export_applies_rules_from_a_file(tmp_path: Path) -> None:
    path = _spec(tmp_path)
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nlabel = "quote"\n' + r"patterns = ['\"\w+']" + "\n")
    out = tmp_path / "rows.csv"
    assert _run(["export", str(path), "--rules", str(rules), "-o", str(out)]) == 0
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame["rule_label"].tolist()[:2] == ["quote", "quote"]
    assert frame["rule_match"].tolist()[0] == '"hello'
    assert set(frame["rule_label"]) == {"quote", ""}


def test_the_analysis_cache_is_exact_and_follows_changes(tmp_path: Path) -> None:
    from persona_tui.analysis.cache import cache_folder
    from persona_tui.session.model import TrialKey
    from persona_tui.session.store import SessionStore

    path = _spec(tmp_path)
    fresh = load_sessions([path], use_cache=False)
    first = load_sessions([path])  # reads the file, fills the cache
    assert len(list(cache_folder().glob("*.json"))) == 1
    assert load_sessions([path]) == first == fresh  # from the cache, identical records
    with SessionStore.open(path) as store:
        store.annotate(TrialKey("baseline", "p2", 1), annotation("carol", "cruel", minute=9))
    changed = load_sessions([path])
    assert [r.annotator for r in changed if r.probe == "p2" and r.condition == "baseline"] == [
        "carol"
    ]
    rubric = Rubric("coherence", "{question} {answer}")
    judge_file = JudgeFile("s-1")
    judge_file.add(
        rubric,
        Judgement(
            "framed",
            "p2",
            0,
            "coherence",
            rubric.sha256,
            "j",
            "ef" * 32,
            "llama.cpp",
            "logprob",
            40.0,
            0.5,
            "2026-01-03T00:00:00+00:00",
        ),
    )
    save_judge_file(path, judge_file)
    judged = [r for r in load_sessions([path]) if r.judge]
    assert [r.judge["coherence"].score for r in judged] == [40.0]
