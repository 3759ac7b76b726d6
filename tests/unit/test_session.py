"""The session store: exact round trips, incremental saves, locking, crash and disk-full safety."""

from __future__ import annotations

import dataclasses
import errno
import re
import signal
import stat
import subprocess
import sys
import threading
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_tui._util import atomic
from persona_tui._util.atomic import atomic_write_text, describe_os_error, temp_prefix
from persona_tui._util.toml_text import render_string
from persona_tui.errors import SessionError, SessionLockedError
from persona_tui.session.model import (
    AdapterRecord,
    Annotation,
    Arm,
    OptionCell,
    Plan,
    Session,
    SessionHeader,
    Trial,
    TrialKey,
    new_session_id,
)
from persona_tui.session.store import SessionStore, load_session, lock_path_for
from persona_tui.session.write import render_session
from persona_tui.values import ModelInfo, SamplingParams

# Strings that are easy to get wrong in TOML: every C0 control, DEL, C1, terminal escapes,
# quotes next to the closing delimiter, backslashes before newlines, CR/CRLF, whitespace.
TRICKY = [
    "",
    "".join(chr(c) for c in range(0x20)) + "\x7f",
    "".join(chr(c) for c in range(0x80, 0xA0)),
    "\x1b[31mred\x1b[0m \x1b]0;window title\x07 \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\",
    "line one\r\nline two\r\n",
    "lone\rcarriage return",
    "trailing spaces   \nand tabs\t\t\n   ",
    "\nstarts with a newline",
    "\n",
    "\n\n",
    'ends with a quote"',
    'ends with two quotes""\nsecond line""',
    '"""triple"""\n""""quadruple""""',
    '"',
    '""',
    "'''single triple'''",
    "back\\slash at line end \\\nnext \\",
    "\\u0041 is not A, \\n is not a newline",
    "nul \x00 in the middle",
    "emoji 😀👩‍👩‍👧 CJK 漢字 RTL ‮reversed‬ combining é e\u0301 zero-width \u200b",
    "\ufeffBOM and \u2028 line/paragraph separators \u2029 and \U0010ffff",
    'key = "value"\n[[trials]]\nprompt = """',
]


def make_header(**changes: Any) -> SessionHeader:
    header = SessionHeader(
        id="2026-11-29T0130-bully-school-play-3f2a",
        scenario_id="bully-school-play",
        scenario_sha256="ab" * 32,
        scenario_source='id = "bully-school-play"\ntitle = "Bullies"\n',
        scenario_path="/scenarios/bully-school-play.toml",
        created="2026-11-29T01:30:00+01:00",
        status="running",
        model=ModelInfo(
            backend="llama.cpp",
            backend_version="0.3.16",
            path="/models/tiny.gguf",
            name="tiny",
            sha256="cd" * 32,
            size_bytes=123456,
            architecture="llama",
            quantization="F32",
            context_length=512,
            chat_template_sha256="ef" * 32,
            extra={"general.name": "tiny", "odd key \x1b": "value\n"},
        ),
        sampling=SamplingParams(temperature=0.7, top_p=0.9, top_k=20, min_p=0.0, max_tokens=64),
        plan=Plan(("baseline", "bully"), ("wish", "power"), 3, 42, "chat", ("<end>", "\nUser:")),
        app_version="0.1.0",
        chat_template="{{ messages }}\n",
    )
    return dataclasses.replace(header, **changes)


def make_trial(
    condition: str = "baseline", probe: str = "wish", sample: int = 0, **changes: Any
) -> Trial:
    trial = Trial(
        condition=condition,
        probe=probe,
        sample=sample,
        seed=1_000_003 * (sample + 1),
        prompt=f"<start>user\n{condition} asks about {probe}\n<start>assistant\n",
        response=f"A response to {probe}, sample {sample}.\n",
        finish_reason="stop",
        prompt_tokens=17,
        completion_tokens=9,
        started="2026-11-29T01:30:01.250000+01:00",
        seconds=0.1 + 0.2,
    )
    return dataclasses.replace(trial, **changes)


def note(annotator: str = "ana", label: str = "cruel", **scores: int) -> Annotation:
    return Annotation(annotator, "2026-11-29T02:00:00+01:00", label, dict(scores), "")


def expected_document(session: Session) -> dict[str, Any]:
    """The TOML document a session must parse to, built from the dataclasses independently."""
    h = session.header

    def listify(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

    model = {k: v for k, v in dataclasses.asdict(h.model).items() if v is not None}
    scenario = {"source": h.scenario_source}
    if h.chat_template is not None:
        scenario["chat_template"] = h.chat_template
    doc: dict[str, Any] = {
        "format_version": 1,
        "session": {
            "id": h.id,
            "scenario_id": h.scenario_id,
            "scenario_sha256": h.scenario_sha256,
            "created": h.created,
            "status": h.status,
            "app_version": h.app_version,
            "scenario_path": h.scenario_path,
        },
        "model": model,
        "sampling": dataclasses.asdict(h.sampling),
        "plan": {k: listify(v) for k, v in dataclasses.asdict(h.plan).items()},
        "scenario": scenario,
    }
    trials = []
    for t in session.trials:
        table = {f.name: listify(getattr(t, f.name)) for f in dataclasses.fields(t)}
        if not table["projections"]:  # written only when the run measured traits
            del table["projections"]
        annotations = table.pop("annotations")
        if annotations:  # None (an annotation's blind_seed when not blind) is omitted
            table["annotations"] = [
                {k: v for k, v in dataclasses.asdict(a).items() if v is not None}
                for a in annotations
            ]
        trials.append(table)
    if trials:
        doc["trials"] = trials
    return doc


def temp_files(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name.startswith(temp_prefix(path))]


@pytest.fixture
def session_path(tmp_path: Path) -> Path:
    return tmp_path / "sessions" / "s.toml"


# ---------------------------------------------------------------------------- round trips


def test_create_writes_a_private_valid_file_and_makes_folders(session_path: Path) -> None:
    header = make_header()
    with SessionStore.create(session_path, header) as store:
        assert store.session == Session(header, [], session_path)
    assert stat.S_IMODE(session_path.stat().st_mode) == 0o600
    doc = tomllib.loads(session_path.read_text("utf-8"))
    assert doc["format_version"] == 1
    assert doc == expected_document(Session(header, [], session_path))
    assert load_session(session_path) == Session(header, [], session_path)


def test_create_refuses_an_invalid_header_without_writing(session_path: Path) -> None:
    with pytest.raises(SessionError, match=r"session\.status must be one of running"):
        SessionStore.create(session_path, make_header(status="done"))
    assert not session_path.exists()
    SessionStore.create(session_path, make_header()).close()  # the lock was released


def test_create_refuses_an_existing_file(session_path: Path) -> None:
    SessionStore.create(session_path, make_header()).close()
    before = session_path.read_bytes()
    with pytest.raises(SessionError, match="already exists; resume it with --resume"):
        SessionStore.create(session_path, make_header(id="other"))
    assert session_path.read_bytes() == before


def test_trials_append_replace_annotate_and_status_persist(session_path: Path) -> None:
    with SessionStore.create(session_path, make_header()) as store:
        a, b, c = make_trial(sample=0), make_trial(sample=1), make_trial("bully", "power", 0)
        for trial in (a, b, c):
            store.save_trial(trial)
        assert [t.key for t in store.session.trials] == [a.key, b.key, c.key]

        rerun = dataclasses.replace(a, response="a re-run", seed=7)
        store.save_trial(rerun)  # same key: replaced, and it finished last
        assert store.session.trials == [b, c, rerun]

        first = store.annotate(b.key, note("ana", "kind", malice=0))
        second = store.annotate(b.key, note("bo", "cruel", malice=4))
        updated = store.annotate(b.key, note("ana", "cruel", malice=3))  # replaces ana's
        assert first.annotations == (note("ana", "kind", malice=0),)
        assert second.annotations == (note("ana", "kind", malice=0), note("bo", "cruel", malice=4))
        assert updated.annotations == (
            note("ana", "cruel", malice=3),
            note("bo", "cruel", malice=4),
        )
        assert store.session.trials == [updated, c, rerun]

        store.set_status("complete")
        expected = store.session
    assert expected.header.status == "complete"
    assert load_session(session_path) == expected
    assert tomllib.loads(session_path.read_text("utf-8")) == expected_document(expected)


def test_incremental_file_equals_a_full_render(session_path: Path) -> None:
    """The joined cached chunks are byte-identical to rendering the whole session at once."""
    with SessionStore.create(session_path, make_header()) as store:
        for n in range(6):
            store.save_trial(make_trial("bully" if n % 2 else "baseline", "wish", n))
        store.annotate(TrialKey("bully", "wish", 3), note(malice=2))
        store.save_trial(make_trial("baseline", "wish", 0, response="replaced"))
        store.set_status("interrupted")
        session = store.session
    text = session_path.read_text("utf-8")
    assert text == render_session(session.header, session.trials)
    assert tomllib.loads(text) == expected_document(session)


def test_open_resumes_with_existing_trials_and_annotations(session_path: Path) -> None:
    with SessionStore.create(session_path, make_header()) as store:
        store.save_trial(make_trial(sample=0))
        store.annotate(TrialKey("baseline", "wish", 0), note(malice=1))
    with SessionStore.open(session_path) as store:
        assert len(store.session.trials) == 1
        store.save_trial(make_trial(sample=1))
        session = store.session
    assert session.trials[0].annotations == (note(malice=1),)
    assert session_path.read_text("utf-8") == render_session(session.header, session.trials)


def test_optional_values_are_omitted_and_read_back_as_none(session_path: Path) -> None:
    model = dataclasses.replace(make_header().model, chat_template_sha256=None, extra={})
    header = make_header(model=model, chat_template=None, plan=make_header().plan)
    SessionStore.create(session_path, header).close()
    doc = tomllib.loads(session_path.read_text("utf-8"))
    assert "chat_template_sha256" not in doc["model"]
    assert "chat_template" not in doc["scenario"]
    assert load_session(session_path).header == header


def test_adapters_are_written_per_condition_and_read_back(session_path: Path) -> None:
    bully = AdapterRecord(
        condition="bully",
        path="/adapters/bully/adapter.gguf",
        sha256="12" * 32,
        size_bytes=7177,
        base_model_sha256="cd" * 32,
        data_sha256="34" * 32,
        steps=50,
        hyperparameters={"lr": "0.0001", "rank": "8"},
        training_sha256="56" * 32,
        training_record='version = 1\n\n[hyperparameters]\nlr = 0.0001\ntargets = ["q_proj"]\n',
    )
    header = make_header(adapters=(bully,))
    SessionStore.create(session_path, header).close()
    text = session_path.read_text("utf-8")
    assert "\n[adapters.bully]\npath = " in text and "[adapters.bully.hyperparameters]" in text
    assert load_session(session_path).header == header
    assert header.adapter_paths() == {Arm("bully"): "/adapters/bully/adapter.gguf"}
    session_path.write_text(text.replace("[adapters.bully", "[adapters.bullies"), "utf-8")
    with pytest.raises(SessionError, match=r"adapters\.bullies: not a condition of this session"):
        load_session(session_path)


def test_a_replicated_study_records_each_run_s_adapter_trials_and_cells(
    session_path: Path,
) -> None:
    """A replicated training study: `[plan]` says which conditions run once per training
    run, each replicate's adapter has its table (`[adapters."bully/2"]`), and every trial and
    option cell says which run answered; a replicate outside the plan is refused."""
    plan = dataclasses.replace(make_header().plan, replicates=2, replicated=("bully",))
    assert plan.arms == (Arm("baseline"), Arm("bully", 1), Arm("bully", 2))
    assert plan.total == 3 * len(plan.probes) * plan.samples
    adapters = tuple(
        AdapterRecord(
            condition="bully",
            path=f"/adapters/bully/replicate-{k}/adapter.gguf",
            sha256=f"{k}" * 64,
            size_bytes=7177,
            replicate=k,
        )
        for k in (1, 2)
    )
    header = make_header(plan=plan, adapters=adapters)
    trials = [make_trial(), make_trial("bully", replicate=1), make_trial("bully", replicate=2)]
    cell = OptionCell("bully", "wish", "prompt", 3, 0.1, (), 512, replicate=2)
    with SessionStore.create(session_path, header) as store:
        for trial in trials:
            store.save_trial(trial)
        store.save_option_cell(cell)
    text = session_path.read_text("utf-8")
    assert '\n[adapters."bully/2"]\n' in text and "\nreplicates = 2\n" in text
    session = load_session(session_path)
    assert session.header == header and session.trials == trials
    assert session.option_cells == [cell]
    assert session.header.adapter_paths()[Arm("bully", 2)].endswith("replicate-2/adapter.gguf")
    assert len({t.key for t in session.trials}) == 3  # the replicate is part of the key
    bad = text.replace("replicate = 2\n\n[[option_cells", "replicate = 3\n\n[[option_cells")
    session_path.write_text(bad, "utf-8")
    with pytest.raises(SessionError, match=r"replicate: must be 1\.\.2"):
        load_session(session_path)


def test_the_run_s_choices_round_trip_and_old_sessions_did_both(session_path: Path) -> None:
    """`[plan]`'s `sample` and `score` (`--no-sample`, `--no-score`) are always written; a
    session from before them has neither and did both."""
    plan = dataclasses.replace(make_header().plan, score=False)
    SessionStore.create(session_path, make_header(plan=plan)).close()
    text = session_path.read_text("utf-8")
    assert "\nbatch_cells = 0\nsample = true\nscore = false\n" in text
    assert load_session(session_path).header.plan == plan
    with SessionStore.open(session_path) as store:
        store.set_choices(sample=False, score=True)
    reread = load_session(session_path).header.plan
    assert (reread.sample, reread.score) == (False, True)

    session_path.write_text(text.replace("sample = true\nscore = false\n", ""), "utf-8")
    old = load_session(session_path).header.plan
    assert (old.sample, old.score) == (True, True)


def test_a_run_that_would_do_nothing_is_neither_written_nor_read(session_path: Path) -> None:
    nothing = dataclasses.replace(make_header().plan, sample=False, score=False)
    with pytest.raises(SessionError, match=r"plan\.sample and plan\.score are both false"):
        SessionStore.create(session_path, make_header(plan=nothing))
    assert not session_path.exists()
    SessionStore.create(session_path, make_header()).close()
    with SessionStore.open(session_path) as store, pytest.raises(SessionError, match="nothing"):
        store.set_choices(sample=False, score=False)
    text = session_path.read_text("utf-8")
    assert "sample = true\nscore = true\n" in text  # the refused change left the file as it was
    session_path.write_text(text.replace("sample = true", "sample = false"), "utf-8")
    session_path.write_text(
        session_path.read_text("utf-8").replace("score = true", "score = false"), "utf-8"
    )
    with pytest.raises(SessionError, match=r"plan\.score: sample and score are both false"):
        load_session(session_path)
    session_path.write_text(text.replace("score = true", 'score = "no"'), "utf-8")
    with pytest.raises(SessionError, match=r"plan\.score: expected true or false"):
        load_session(session_path)


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_text_reads_back_identical_everywhere(session_path: Path, text: str) -> None:
    model = dataclasses.replace(make_header().model, name=text, extra={text: text, "k": text})
    header = make_header(scenario_source=text, chat_template=text, model=model)
    header = dataclasses.replace(header, plan=dataclasses.replace(header.plan, stop=(text, "x")))
    trial = make_trial(
        condition=text,
        prompt=text,
        response=text,
        turn_responses=(text, "plain", text),
        annotations=(Annotation(text, text, text, {text: 1, "b": -2}, text),),
    )
    with SessionStore.create(session_path, header) as store:
        store.save_trial(trial)
        store.annotate(trial.key, Annotation("z", "t", "", {}, text + text))
        session = store.session
    assert load_session(session_path) == session
    assert session.trials[0].response == text
    assert tomllib.loads(session_path.read_text("utf-8")) == expected_document(session)


@pytest.mark.parametrize("fast_parser", [True, False], ids=["rtoml", "tomllib"])
def test_both_parsers_read_tricky_text_identically(
    session_path: Path, monkeypatch: pytest.MonkeyPatch, fast_parser: bool
) -> None:
    """rtoml reads sessions fast when installed; tomllib is the fallback: same result."""
    if fast_parser:
        pytest.importorskip("rtoml")
    else:
        monkeypatch.setitem(sys.modules, "rtoml", None)  # makes `import rtoml` fail
    trials = [
        make_trial(probe=f"p{n}", prompt=text, response=text, turn_responses=(text,))
        for n, text in enumerate(TRICKY)
    ]
    with SessionStore.create(session_path, make_header()) as store:
        for trial in trials:
            store.save_trial(trial)
        session = store.session
    assert load_session(session_path) == session
    session_path.write_text("format_version = 1\n[session\n", encoding="utf-8")
    with pytest.raises(SessionError, match=r":2:\d+: not valid TOML"):
        load_session(session_path)  # tomllib's line:column, whichever parser ran first


def test_session_file_holds_no_raw_control_characters(session_path: Path) -> None:
    """Escapes make the file safe to `cat`: no ESC, CR, NUL or C1 byte reaches the terminal."""
    with SessionStore.create(session_path, make_header()) as store:
        for n, text in enumerate(TRICKY):
            store.save_trial(make_trial(sample=n, response=text))
    raw = session_path.read_text("utf-8")
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", raw)


def test_strings_are_written_readably_and_portably() -> None:
    """Newlines and tabs stay raw in multi-line strings; everything a terminal or a stricter
    TOML parser could trip on is escaped (including a quote right before the closing quotes)."""
    assert render_string("plain 'text'") == "\"plain 'text'\""
    assert render_string('a\tb "q" \\ \x1b[0m') == '"a\\tb \\"q\\" \\\\ \\u001b[0m"'
    assert render_string('say "hi"\n\tok\r\n"""') == '"""\nsay "hi"\n\tok\\r\n\\"\\"\\""""'
    assert render_string("x\n\x85\x7f") == '"""\nx\n\\u0085\\u007f"""'


TEXT = st.text(
    st.one_of(
        st.characters(exclude_categories=("Cs",)),
        st.sampled_from(list('"\\\n\r\t\x1b\x00\x7f\x85 ')),
    )
)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_render_string_round_trips_any_text(text: str) -> None:
    assert tomllib.loads(f"v = {render_string(text)}\n")["v"] == text


@settings(max_examples=40, deadline=None)
@given(
    st.lists(TEXT, min_size=1, max_size=3),
    st.dictionaries(TEXT, st.integers(-9, 9)),
    st.none() | st.integers(0, 2**63 - 1),
)
def test_trials_round_trip_any_text(
    texts: list[str], scores: dict[str, int], blind_seed: int | None
) -> None:
    from persona_tui.session.read import parse_session
    from persona_tui.session.write import render_trial

    trial = make_trial(
        prompt=texts[0],
        response=texts[-1],
        turn_responses=tuple(texts),
        annotations=(Annotation(texts[0], "t", texts[-1], scores, texts[0], blind_seed),),
    )
    header = make_header()
    data = (render_session(header, []) + render_trial(trial)).encode("utf-8")
    assert parse_session(data, Path("x.toml")).trials == [trial]


def test_numbers_round_trip_exactly(session_path: Path) -> None:
    trials = [
        make_trial(sample=0, seconds=1e-300, seed=2**63 - 1, prompt_tokens=0),
        make_trial(sample=1, seconds=123456789.123456789, seed=-(2**63)),
        make_trial(sample=2, seconds=float("inf"), seed=0),
    ]
    with SessionStore.create(session_path, make_header()) as store:
        for trial in trials:
            store.save_trial(trial)
    assert load_session(session_path).trials == trials


def test_unstorable_values_are_refused_before_touching_the_file(session_path: Path) -> None:
    with SessionStore.create(session_path, make_header()) as store:
        store.save_trial(make_trial(sample=0))
        before = session_path.read_bytes()
        with pytest.raises(SessionError, match=r"response contains a lone surrogate \(U\+D800"):
            store.save_trial(make_trial(sample=1, response="ok \ud800 not ok"))
        with pytest.raises(SessionError, match="does not fit in a TOML integer"):
            store.save_trial(make_trial(sample=1, seed=2**64))
        # What the reader would refuse, the writer refuses, so a saved session always loads.
        with pytest.raises(SessionError, match="finish_reason must be one of stop, length"):
            store.save_trial(make_trial(sample=1, finish_reason="eos"))
        with pytest.raises(SessionError, match="sample must be >= 0, not -1"):
            store.save_trial(make_trial(sample=-1))
        with pytest.raises(SessionError, match=r"prompt_tokens must be an integer, not 1\.5"):
            store.save_trial(make_trial(sample=1, prompt_tokens=1.5))
        assert session_path.read_bytes() == before
        assert len(store.session.trials) == 1


def test_annotating_an_unknown_trial_is_a_session_error(session_path: Path) -> None:
    with (
        SessionStore.create(session_path, make_header()) as store,
        pytest.raises(SessionError, match="no trial with condition 'x', probe 'y', sample 0"),
    ):
        store.annotate(TrialKey("x", "y", 0), note())


def test_invalid_status_is_refused(session_path: Path) -> None:
    with (
        SessionStore.create(session_path, make_header()) as store,
        pytest.raises(SessionError, match="invalid session status 'done'"),
    ):
        store.set_status("done")  # type: ignore[arg-type]


def test_concurrent_saves_and_annotations_all_land(session_path: Path) -> None:
    with SessionStore.create(session_path, make_header()) as store:
        store.save_trial(make_trial(sample=0))

        def run_trials() -> None:
            for n in range(1, 30):
                store.save_trial(make_trial(sample=n))

        worker = threading.Thread(target=run_trials)
        worker.start()
        for n in range(30):
            store.annotate(TrialKey("baseline", "wish", 0), note(malice=n))
        worker.join()
        session = store.session
    assert load_session(session_path) == session
    assert len(session.trials) == 30
    assert session.trials[0].annotations == (note(malice=29),)


# ---------------------------------------------------------------------------- locking


def test_a_second_writer_is_refused_until_the_first_closes(session_path: Path) -> None:
    store = SessionStore.create(session_path, make_header())
    lock_file = lock_path_for(session_path)
    with pytest.raises(SessionLockedError) as caught:
        SessionStore.open(session_path)
    assert str(caught.value) == (
        f"session {session_path} is being written by another process "
        f"(lock file {lock_file}); close it there first"
    )
    assert load_session(session_path).header.id == make_header().id  # readers need no lock
    store.close()
    store.close()  # idempotent
    with pytest.raises(SessionError, match="was closed"):
        store.save_trial(make_trial())
    SessionStore.open(session_path).close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_writer_does_not_leave_the_session_locked(session_path: Path) -> None:
    SessionStore.create(session_path, make_header()).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from persona_tui.session.store import SessionStore; "
            "store = SessionStore.open(Path(sys.argv[1])); print('locked', flush=True); "
            "time.sleep(60)",
            str(session_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SessionLockedError):
            SessionStore.open(session_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    assert lock_path_for(session_path).exists()  # the file stays; the kernel dropped the lock
    with SessionStore.open(session_path) as store:
        store.save_trial(make_trial())


# ---------------------------------------------------------------------------- crash safety


def test_a_crash_before_the_rename_leaves_the_old_file(
    session_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SessionStore.create(session_path, make_header()) as store:
        store.save_trial(make_trial(sample=0))
        before = session_path.read_bytes()

        def crash(src: object, dst: object) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(atomic.os, "replace", crash)
        with pytest.raises(SessionError, match=r"previous save \(1 trials\) is intact"):
            store.save_trial(make_trial(sample=1))
        assert session_path.read_bytes() == before
        assert temp_files(session_path) == []
        assert len(store.session.trials) == 1  # the failed change was not applied
        monkeypatch.undo()
        store.save_trial(make_trial(sample=1))  # retrying works
    assert len(load_session(session_path).trials) == 2


def test_disk_full_says_so_and_keeps_the_previous_save(
    session_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SessionStore.create(session_path, make_header()) as store:
        store.save_trial(make_trial(sample=0))
        before = session_path.read_bytes()

        def full(fd: int, data: object) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(atomic.os, "write", full)
        with pytest.raises(SessionError) as caught:
            store.annotate(TrialKey("baseline", "wish", 0), note())
        monkeypatch.undo()
        message = str(caught.value)
        assert f"could not save session {session_path}: the disk is full" in message
        assert "the previous save (1 trials) is intact" in message
        assert session_path.read_bytes() == before
        assert temp_files(session_path) == []
        assert store.session.trials[0].annotations == ()


def test_open_removes_temp_files_left_by_a_killed_writer(session_path: Path) -> None:
    SessionStore.create(session_path, make_header()).close()
    stale = session_path.parent / f"{temp_prefix(session_path)}abc123.tmp"
    stale.write_text("half a session")
    unrelated = session_path.parent / ".other.toml.abc.tmp"
    unrelated.write_text("another session's temp file")
    SessionStore.open(session_path).close()
    assert not stale.exists()
    assert unrelated.exists()


def test_atomic_write_text_sets_the_mode_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "config.toml"
    atomic_write_text(target, "a = 1\r\n", mode=0o644)
    assert target.read_bytes() == b"a = 1\r\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644

    def fail_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(atomic.os, "fsync", fail_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        atomic_write_text(target, "b = 2\n")
    assert target.read_bytes() == b"a = 1\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]
    assert describe_os_error(OSError(errno.ENOSPC, "x")) == "the disk is full"
    assert describe_os_error(OSError(errno.EXDEV, "Cross-device link")) == "Cross-device link"


# ---------------------------------------------------------------------------- bad files


def write_session(path: Path, trials: int = 2) -> str:
    with SessionStore.create(path, make_header()) as store:
        for n in range(trials):
            store.save_trial(make_trial(sample=n))
    return path.read_text("utf-8")


def test_truncated_file_names_file_line_and_column(session_path: Path) -> None:
    text = write_session(session_path)
    cut = text.index("A response to wish, sample 1") + 5  # inside the last trial's response
    session_path.write_text(text[:cut], "utf-8")
    line = text[:cut].count("\n") + 1
    column = cut - text.rfind("\n", 0, cut)
    with pytest.raises(SessionError) as caught:
        load_session(session_path)
    assert str(caught.value) == (
        f"{session_path}:{line}:{column}: not valid TOML (Unterminated string at the end of the "
        "file): the session file is corrupt or truncated"
    )


def test_syntax_error_position_is_exact(session_path: Path) -> None:
    text = write_session(session_path)
    lines = text.split("\n")
    n = lines.index("prompt_tokens = 17")
    lines[n] = "prompt_tokens = = 17"
    session_path.write_text("\n".join(lines), "utf-8")
    with pytest.raises(SessionError, match=rf"^{re.escape(str(session_path))}:{n + 1}:17: "):
        load_session(session_path)


def test_invalid_utf8_and_empty_files(session_path: Path) -> None:
    text = write_session(session_path)
    data = text.encode("utf-8")
    offset = data.index(b"A response")
    session_path.write_bytes(data[:offset] + b"\xff" + data[offset:])
    line = data[:offset].count(b"\n") + 1
    with pytest.raises(SessionError, match=rf":{line}:\d+: not valid UTF-8"):
        load_session(session_path)
    session_path.write_bytes(b"")
    with pytest.raises(SessionError, match="the file is empty"):
        load_session(session_path)
    with pytest.raises(SessionError, match="no such session file"):
        load_session(session_path.with_name("missing.toml"))
    with pytest.raises(SessionError, match="no such session file"):
        SessionStore.open(session_path.with_name("missing.toml"))
    assert not lock_path_for(session_path.with_name("missing.toml")).exists()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "seed = 2000006",
            'seed = "2000006"',
            r"trials\[1\]\.seed: expected an integer, got a str",
        ),
        ("seconds = 0.30000000000000004\n", "\n", r"trials\[0\]\.seconds: required key is missing"),
        ("probe = ", "prob = ", r"trials\[0\]\.prob: unknown key \(did you mean 'probe'\?\)"),
        ('status = "running"', 'status = "done"', r"session\.status: expected one of 'running'"),
        ("format_version = 1", "format_version = 2", "unknown session format 2 .*upgrade"),
        ("format_version = 1", "", "format_version: missing: this is not a persona-tui session"),
        ("top_k = 20", "top_k = 20.5", r"sampling\.top_k: expected an integer, got a float"),
        ("temperature = 0.7\n", "", r"sampling\.temperature: required key is missing"),
        ("quantization = ", "quantisation = ", r"did you mean 'quantization'"),
        ('finish_reason = "stop"', 'finish_reason = "eos"', r"trials\[0\]\.finish_reason"),
        ("sample = 1", "sample = 0", r"trials\[1\]: duplicate of trials\[0\]"),
        ('created = "2026-11-29T01:30:00+01:00"', "created = 2026-11-29T01:30:00+01:00", "date"),
        ("sample = 1", "sample = -1", r"trials\[1\]\.sample: expected an integer >= 0"),
    ],
)
def test_invalid_content_names_the_key_path(
    session_path: Path, old: str, new: str, message: str
) -> None:
    text = write_session(session_path)
    assert old in text
    session_path.write_text(text.replace(old, new, 1), "utf-8")  # the first trial's, if several
    with pytest.raises(SessionError, match=rf"^{re.escape(str(session_path))}: .*{message}"):
        load_session(session_path)


def test_blind_seed_round_trips_and_is_absent_when_not_blind(session_path: Path) -> None:
    blind = dataclasses.replace(note("ana", malice=1), blind_seed=2896595180)
    edge = dataclasses.replace(note("bo"), blind_seed=2**63 - 1)
    zero = dataclasses.replace(note("cy"), blind_seed=0)
    seeing = note("di")
    with SessionStore.create(session_path, make_header()) as store:
        store.save_trial(make_trial(sample=0))
        for annotation in (blind, edge, zero, seeing):
            store.annotate(TrialKey("baseline", "wish", 0), annotation)
        # Annotating again seeing the condition replaces the blind annotation: no seed left.
        store.save_trial(make_trial(sample=1))
        store.annotate(TrialKey("baseline", "wish", 1), blind)
        store.annotate(TrialKey("baseline", "wish", 1), note("ana", malice=2))
        expected = store.session
    loaded = load_session(session_path)
    assert loaded == expected
    assert [a.blind_seed for a in loaded.trials[0].annotations] == [2896595180, 2**63 - 1, 0, None]
    assert loaded.trials[1].annotations == (note("ana", malice=2),)
    doc = tomllib.loads(session_path.read_text("utf-8"))
    assert doc == expected_document(expected)
    assert [a.get("blind_seed") for a in doc["trials"][0]["annotations"]] == [
        2896595180,
        2**63 - 1,
        0,
        None,
    ]
    assert "blind_seed" not in doc["trials"][1]["annotations"][0]
    assert "blind_seed = 2896595180\n" in session_path.read_text("utf-8")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"2896595180"', r"expected an integer, got a string \('2896595180'\)"),
        ("12.0", r"expected an integer, got a float"),
        ("true", r"expected an integer, got a boolean"),
        ("-1", r"expected an integer >= 0, got -1"),
        (
            "9223372036854775808",
            r"expected an integer < 2\*\*63 \(64-bit\), got 9223372036854775808",
        ),
    ],
)
def test_a_bad_blind_seed_names_the_key_path(session_path: Path, value: str, message: str) -> None:
    with SessionStore.create(session_path, make_header()) as store:
        for n in range(2):
            store.save_trial(make_trial(sample=n))
        store.annotate(TrialKey("baseline", "wish", 1), note("ana"))
        store.annotate(
            TrialKey("baseline", "wish", 1), dataclasses.replace(note("bo"), blind_seed=7)
        )
    text = session_path.read_text("utf-8")
    session_path.write_text(text.replace("blind_seed = 7", f"blind_seed = {value}"), "utf-8")
    where = r"trials\[1\]\.annotations\[1\]\.blind_seed"
    with pytest.raises(SessionError, match=rf"^{re.escape(str(session_path))}: {where}: {message}"):
        load_session(session_path)


def test_the_writer_refuses_a_blind_seed_the_reader_would_refuse(session_path: Path) -> None:
    with SessionStore.create(session_path, make_header()) as store:
        store.save_trial(make_trial(sample=0))
        before = session_path.read_bytes()
        key = TrialKey("baseline", "wish", 0)
        for bad, message in (
            (-1, "blind_seed must be >= 0, not -1"),
            (2**63, "blind_seed = 9223372036854775808 does not fit in a TOML integer"),
            ("7", "blind_seed must be an integer, not '7'"),
        ):
            with pytest.raises(SessionError, match=re.escape(message)):
                store.annotate(key, dataclasses.replace(note(), blind_seed=bad))
        assert session_path.read_bytes() == before
        assert store.session.trials[0].annotations == ()


def test_annotation_type_errors_name_the_nested_path(session_path: Path) -> None:
    with SessionStore.create(session_path, make_header()) as store:
        store.save_trial(make_trial(sample=0))
        store.annotate(TrialKey("baseline", "wish", 0), note(malice=2))
    text = session_path.read_text("utf-8").replace("{ malice = 2 }", '{ malice = "high" }')
    session_path.write_text(text, "utf-8")
    with pytest.raises(SessionError, match=r"trials\[0\]\.annotations\[0\]\.scores\.malice"):
        load_session(session_path)


# ---------------------------------------------------------------------------- ids


def test_new_session_id_is_sortable_and_filesystem_safe() -> None:
    early = new_session_id("bully-school-play", datetime(2026, 11, 29, 1, 30))
    late = new_session_id("bully-school-play", datetime(2026, 11, 29, 13, 5))
    assert re.fullmatch(r"2026-11-29T0130-bully-school-play-[0-9a-f]{4}", early)
    assert early < late
    odd = new_session_id("Élan / ../Two Words!", datetime(2026, 1, 2, 3, 4))
    assert re.fullmatch(r"2026-01-02T0304-elan-two-words-[0-9a-f]{4}", odd)
    assert re.fullmatch(
        r"2026-01-02T0304-session-[0-9a-f]{4}", new_session_id("日本", datetime(2026, 1, 2, 3, 4))
    )


def test_the_documented_example_is_exactly_what_the_writer_produces(tmp_path: Path) -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "session-format.md"
    example = re.search(r"```toml\n(.*?)```", doc.read_text("utf-8"), re.DOTALL)
    assert example is not None
    path = tmp_path / "example.toml"
    path.write_text(example.group(1), "utf-8")
    session = load_session(path)
    assert render_session(session.header, session.trials) == example.group(1)
    assert session.trials[1].response.startswith("\x1b[1mPower.")
    assert session.trials[1].response.endswith("\r\n")
