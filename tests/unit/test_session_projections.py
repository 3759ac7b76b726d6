"""Trait projections and the persona-vector records in sessions: round trips, old files
unchanged byte for byte, validation, the store's saves (crash safety included)."""

from __future__ import annotations

import dataclasses
import errno
import tomllib
from pathlib import Path

import pytest

from persona_tui._util import atomic
from persona_tui.errors import SessionError
from persona_tui.session.index import reproducibility_data, reproducibility_record
from persona_tui.session.model import CellKey, OptionCell, SteeringRecord, TraitRecord, TrialKey
from persona_tui.session.store import SessionStore, load_session
from persona_tui.session.write import render_session
from tests.unit.test_session import make_header, make_trial, note, temp_files

MALICE = TraitRecord("malice", 12, "/vectors/v.gguf", "aa" * 32, 3.25)
SYCO = TraitRecord("sycophancy", 9, "/vectors/v.gguf", "aa" * 32, 0.5)
STEER = SteeringRecord("bully", "malice", 12, -1.5, "/vectors/v.gguf", "aa" * 32)


def traited_header() -> object:
    return make_header(traits={"malice": MALICE, "sycophancy": SYCO}, steering={"bully": STEER})


def cell(condition: str = "baseline", probe: str = "wish", **changes: object) -> OptionCell:
    base = OptionCell(condition, probe, "prompt text", 17, 0.25)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def session_path(tmp_path: Path) -> Path:
    return tmp_path / "sessions" / "s.toml"


def test_projections_and_records_round_trip(session_path: Path) -> None:
    with SessionStore.create(session_path, make_header()) as store:
        store.set_traits({"malice": MALICE, "sycophancy": SYCO})
        store.set_steering({"bully": STEER})
        store.save_trial(make_trial(projections={"malice": 0.1 + 0.2, "sycophancy": -1e-300}))
        store.save_trial(make_trial(sample=1))  # a trial without projections
        store.save_option_cell(cell(projections={"malice": -2.5}))
        expected = store.session
    loaded = load_session(session_path)
    assert loaded == expected
    assert loaded.traits == {"malice": MALICE, "sycophancy": SYCO}
    assert loaded.steering == {"bully": STEER}
    assert loaded.trials[0].projections == {"malice": 0.30000000000000004, "sycophancy": -1e-300}
    assert loaded.trials[1].projections == {}
    assert loaded.option_cells[0].projections == {"malice": -2.5}
    doc = tomllib.loads(session_path.read_text("utf-8"))
    assert doc["traits"]["malice"] == {
        "layer": 12,
        "vectors": "/vectors/v.gguf",
        "sha256": "aa" * 32,
        "norm": 3.25,
    }
    assert doc["steering"]["bully"]["scale"] == -1.5
    assert "projections" not in doc["trials"][1]
    # the whole file is what a full render gives, and a second save changes nothing
    assert session_path.read_text("utf-8") == render_session(
        loaded.header, loaded.trials, loaded.option_cells
    )


def test_sessions_without_projections_are_written_exactly_as_before(session_path: Path) -> None:
    header = make_header()
    trials = [make_trial(sample=0, annotations=(note(),)), make_trial("bully", "power", 1)]
    text = render_session(header, trials, [cell()])
    assert "projections" not in text and "[traits" not in text and "[steering" not in text
    session_path.parent.mkdir(parents=True)
    session_path.write_text(text, "utf-8")
    before = session_path.read_bytes()
    with SessionStore.open(session_path) as store:
        assert store.session.header.traits == {} and store.session.trials[0].projections == {}
        store.set_status("running")  # a save of an old session: byte for byte the same
    assert session_path.read_bytes() == before


def test_the_reproducibility_record_names_the_vectors(session_path: Path) -> None:
    with SessionStore.create(session_path, traited_header()) as store:  # type: ignore[arg-type]
        session = store.session
    text = reproducibility_record(session)
    assert "trait          malice: layer 12 · norm 3.25 · /vectors/v.gguf" in text
    assert "steering       bully: malice × -1.5 at layer 12" in text
    data = reproducibility_data(session)
    assert data["steering"]["bully"]["sha256"] == "aa" * 32
    assert data["traits"]["sycophancy"]["layer"] == 9
    with SessionStore.create(session_path.with_name("b.toml"), make_header()) as store:
        assert "trait " not in reproducibility_record(store.session)


def test_set_projections_on_saved_trials_and_cells(session_path: Path) -> None:
    with SessionStore.create(session_path, traited_header()) as store:  # type: ignore[arg-type]
        trial = make_trial(projections={"sycophancy": 1.0})
        store.save_trial(trial)
        store.save_option_cell(cell())
        store.annotate(trial.key, note())
        store.set_projections(trial.key, {"malice": 0.75})
        store.set_projections(CellKey("baseline", "wish", 0), {"malice": -0.5})
        expected = store.session
        with pytest.raises(SessionError, match="no trial"):
            store.set_projections(TrialKey("baseline", "wish", 9), {"malice": 1.0})
        with pytest.raises(SessionError, match="no option cell"):
            store.set_projections(CellKey("bully", "wish", 0), {"malice": 1.0})
        with pytest.raises(SessionError, match=r"trait 'anger' has no \[traits.anger\]"):
            store.set_projections(trial.key, {"anger": 1.0})
        with pytest.raises(SessionError, match="trait 'anger'"):
            store.save_trial(make_trial(sample=2, projections={"anger": 1.0}))
    loaded = load_session(session_path)
    assert loaded == expected
    assert loaded.trials[0].projections == {"sycophancy": 1.0, "malice": 0.75}
    assert loaded.trials[0].annotations == (note(),)  # the annotation is kept
    assert loaded.option_cells[0].projections == {"malice": -0.5}


def test_a_crash_while_setting_projections_leaves_the_old_file(
    session_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SessionStore.create(session_path, traited_header()) as store:  # type: ignore[arg-type]
        store.save_trial(make_trial())
        store.save_option_cell(cell())
        before = session_path.read_bytes()

        def crash(src: object, dst: object) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(atomic.os, "replace", crash)
        with pytest.raises(SessionError, match=r"previous save \(1 trials\) is intact"):
            store.save_trial(make_trial(sample=1, projections={"malice": 1.0}))
        with pytest.raises(SessionError, match="is intact"):
            store.set_projections(make_trial().key, {"malice": 1.0})
        with pytest.raises(SessionError, match="is intact"):
            store.set_projections(CellKey("baseline", "wish"), {"malice": 1.0})
        assert session_path.read_bytes() == before
        assert temp_files(session_path) == []
        assert store.session.trials[0].projections == {}  # the failed changes were not applied
        assert store.session.option_cells[0].projections == {}
        monkeypatch.undo()
        store.set_projections(CellKey("baseline", "wish"), {"malice": 1.0})
    assert load_session(session_path).option_cells[0].projections == {"malice": 1.0}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("norm = 3.25\n", ""),
            r"traits.malice.norm: required key is missing",
        ),
        (
            lambda t: t.replace("projections = { malice = 0.5 }", 'projections = { malice = "x" }'),
            r"trials\[0\].projections.malice: expected a number",
        ),
        (
            lambda t: t.replace("projections = { malice = 0.5 }", "projections = { anger = 0.5 }"),
            r"trials\[0\].projections.anger: trait 'anger' has no \[traits.anger\]",
        ),
        (
            lambda t: t.replace("[steering.bully]", "[steering.nobody]"),
            r"steering.nobody: not a condition of this session's plan",
        ),
        (
            lambda t: t.replace("layer = 12\n", "layer = 1.5\n", 1),
            r"traits.malice.layer: expected an integer",
        ),
    ],
)
def test_bad_projection_tables_name_the_key_path(
    session_path: Path, edit: object, message: str
) -> None:
    header = traited_header()
    text = render_session(header, [make_trial(projections={"malice": 0.5})])  # type: ignore[arg-type]
    session_path.parent.mkdir(parents=True)
    session_path.write_text(edit(text), "utf-8")  # type: ignore[operator]
    with pytest.raises(SessionError, match=message):
        load_session(session_path)
