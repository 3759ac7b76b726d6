"""Persona vectors through the run's door, in-process on the tiny GGUF (issue 23):
extraction is seeded and cancellable, a projection pass cancelled half-way finishes in
place to an uninterrupted run's values while the file never claims `complete` early, and
an engine that cannot read activations skips projections with a note and refuses steering.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from persona_tui.backend_names import AUTO
from persona_tui.backends.base import Backend
from persona_tui.errors import PersonaError
from persona_tui.models.config import Config, load_config
from persona_tui.run.events import ProjectionsProgress, ProjectionsSkipped, RunEvent
from persona_tui.run.extract import extract_traits
from persona_tui.run.finish import finish_run
from persona_tui.run.lifecycle import RunRequest, open_run
from persona_tui.run.loading import load_run_model
from persona_tui.run.runner import RunControl
from persona_tui.scenario.parse import parse_scenario
from persona_tui.session.store import load_session
from tests.functional.fake_backend import ScriptedBackend
from tests.scenario_text import OPTIONS_SCENARIO, TRAIT_SCENARIO
from tests.tiny_gguf import write_tiny_gguf  # noqa: F401  (runs the llama.cpp canary first)


def quiet(event: RunEvent) -> None:
    pass


def load(model: Path) -> Backend:
    return load_run_model(str(model), load_config(), quiet, backend=AUTO, threads=1, repack=None)


def test_extraction_is_seeded_records_the_model_and_a_cancel_writes_nothing(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    scenario = parse_scenario(TRAIT_SCENARIO)
    backend = load(tiny_gguf)
    try:
        first = extract_traits(scenario, backend, scenario.traits, tmp_path / "a", quiet)
        second = extract_traits(scenario, backend, scenario.traits, tmp_path / "b", quiet)
        import threading

        cancel = threading.Event()
        cancel.set()
        with pytest.raises(PersonaError, match="cancelled; nothing was written"):
            extract_traits(scenario, backend, scenario.traits, tmp_path / "c", quiet, cancel=cancel)
    finally:
        backend.close()
    assert [p.name for p in first] == ["malice.gguf"]
    assert first[0].read_bytes() == second[0].read_bytes()
    from persona_tui.vectors.store import load_trait

    trait = load_trait(tmp_path / "a", "malice")
    assert trait.record.model_sha256 == hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert not list((tmp_path / "c").glob("malice.*"))


def test_a_cancelled_projection_pass_finishes_in_place_to_the_uninterrupted_values(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    scenario = parse_scenario(TRAIT_SCENARIO)
    reference = tmp_path / "reference.toml"
    request = RunRequest(scenario=scenario, model=str(tiny_gguf), out=reference, threads=1)
    with open_run(request, quiet) as run:
        assert finish_run(run, quiet).status == "complete"

    path = tmp_path / "s.toml"
    control = RunControl()
    statuses: list[str] = []

    def cancel_half_way(event: RunEvent) -> None:
        if isinstance(event, ProjectionsProgress) and 0 < event.done < event.total:
            # The file does not claim `complete` while the pass is under way.
            statuses.append(load_session(path).header.status)
            control.cancel()

    request = RunRequest(scenario=scenario, model=str(tiny_gguf), out=path, threads=1)
    with open_run(request, cancel_half_way) as run:
        outcome = finish_run(run, cancel_half_way, control)
        assert outcome.cancelled and outcome.status == "interrupted"
        assert run.store.session.header.status == "interrupted"
        measured = [t for t in run.store.session.trials if t.projections]
        assert measured and len(measured) < len(run.store.session.trials)
        assert finish_run(run, quiet).status == "complete"  # resumed in place
    assert statuses == ["running"]
    final, ref = load_session(path), load_session(reference)
    assert final.header.status == "complete"
    assert final.header.traits == ref.header.traits
    assert {t.key: t.projections for t in final.trials} == {
        t.key: t.projections for t in ref.trials
    }
    assert {c.key: c.projections for c in final.option_cells} == {
        c.key: c.projections for c in ref.option_cells
    }


def scripted(ref: str, config: Config, backend: str) -> Backend:
    return ScriptedBackend(["an ", "answer"])  # type: ignore[return-value]


def test_an_engine_without_activations_skips_projections_with_a_note(tmp_path: Path) -> None:
    events: list[RunEvent] = []
    request = RunRequest(scenario=parse_scenario(TRAIT_SCENARIO), out=tmp_path / "s.toml")
    with open_run(request, events.append, loader=scripted) as run:
        assert not run.store.session.header.traits
    notes = [e for e in events if isinstance(e, ProjectionsSkipped)]
    assert len(notes) == 1 and "cannot read activations" in notes[0].note
    # Without traits, or with projections off, nothing is said.
    for text, projections in ((OPTIONS_SCENARIO, True), (TRAIT_SCENARIO, False)):
        events.clear()
        request = RunRequest(
            scenario=parse_scenario(text),
            out=tmp_path / f"{projections}-{len(text)}.toml",
            projections=projections,
        )
        with open_run(request, events.append, loader=scripted):
            pass
        assert not [e for e in events if isinstance(e, ProjectionsSkipped)]


def test_an_engine_without_activations_refuses_a_steered_condition(tmp_path: Path) -> None:
    text = OPTIONS_SCENARIO.replace(
        'label = "Framed"\n', 'label = "Framed"\nsteer = { trait = "malice", scale = 2 }\n'
    )
    out = tmp_path / "s.toml"
    with pytest.raises(PersonaError, match="steers conditions"):
        open_run(RunRequest(scenario=parse_scenario(text), out=out), quiet, loader=scripted)
    assert not out.exists()


def test_a_steering_layer_the_vectors_lack_is_refused_before_the_run(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    scenario = parse_scenario(TRAIT_SCENARIO)
    backend = load(tiny_gguf)
    try:
        extract_traits(scenario, backend, scenario.traits, tmp_path / "vectors", quiet)
    finally:
        backend.close()
    text = OPTIONS_SCENARIO.replace(
        'label = "Framed"\n',
        'label = "Framed"\nsteer = { trait = "malice", scale = 2, layer = 5 }\n',
    )
    out = tmp_path / "s.toml"
    request = RunRequest(
        scenario=parse_scenario(text),
        model=str(tiny_gguf),
        out=out,
        threads=1,
        vectors=(tmp_path / "vectors",),
    )
    with pytest.raises(PersonaError, match="condition framed steers along malice at layer 5"):
        open_run(request, quiet)
    assert not out.exists()


def test_commands_name_a_scenario_file_by_its_path_and_a_builtin_by_its_id(
    tmp_path: Path,
) -> None:
    from persona_tui.run.vectors import scenario_ref
    from persona_tui.scenario.catalog import resolve_scenario
    from persona_tui.scenario.parse import load_scenario

    file = tmp_path / "traits.toml"
    file.write_text(TRAIT_SCENARIO, encoding="utf-8")
    assert scenario_ref(load_scenario(file)) == str(file)
    assert scenario_ref(load_scenario(resolve_scenario("bully-school-play"))) == (
        "bully-school-play"
    )
    assert scenario_ref(parse_scenario(TRAIT_SCENARIO)) == "small-traits"


def test_a_run_extracts_a_trait_once_and_again_when_its_definition_changed(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    from persona_tui.run.events import VectorsExtracted

    def opened(text: str, name: str) -> tuple[list[str], str]:
        events: list[RunEvent] = []
        request = RunRequest(
            scenario=parse_scenario(text), model=str(tiny_gguf), out=tmp_path / name, threads=1
        )
        with open_run(request, events.append) as run:
            sha = run.store.session.header.traits["malice"].sha256
        return [e.trait for e in events if isinstance(e, VectorsExtracted)], sha

    extracted, first = opened(TRAIT_SCENARIO, "a.toml")
    assert extracted == ["malice"]
    extracted, again = opened(TRAIT_SCENARIO, "b.toml")
    assert (extracted, again) == ([], first)  # found in the scenario's folder
    edited = TRAIT_SCENARIO.replace("The assistant is cruel.", "The assistant is spiteful.")
    extracted, changed = opened(edited, "c.toml")
    assert extracted == ["malice"] and changed != first  # not the old trait's directions
    assert opened(edited, "d.toml") == ([], changed)


def test_projections_are_measured_on_the_steered_model(tmp_path: Path, tiny_gguf: Path) -> None:
    # Steering adds scale × direction to the output of the layer the projections read, so
    # a cell's prompt projection moves by exactly the scale times the direction's norm.
    text = TRAIT_SCENARIO.replace(
        'label = "Framed"\n', 'label = "Framed"\nsteer = { trait = "malice", scale = [-1, 1] }\n'
    )
    out = tmp_path / "s.toml"
    request = RunRequest(scenario=parse_scenario(text), model=str(tiny_gguf), out=out, threads=1)
    with open_run(request, quiet) as run:
        assert finish_run(run, quiet).status == "complete"
    session = load_session(out)
    norm = session.header.traits["malice"].norm
    cells = {(c.condition, c.probe): c.projections["malice"] for c in session.option_cells}
    for probe in ("wish", "newcomer"):
        shift = cells[("framed--s1", probe)] - cells[("framed--s-1", probe)]
        assert shift == pytest.approx(2 * norm, abs=1e-5)
