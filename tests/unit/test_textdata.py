"""Deeply nested and other hostile data files: one line naming the file, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from persona_tui._util.hashing import _read_hash_cache
from persona_tui._util.textdata import DataFileError, loads_json, loads_toml, loads_yaml
from persona_tui.analysis.cache import _entry_path, load_for_analysis
from persona_tui.backends.mlx.folder import read_model_config
from persona_tui.backends.mlx.tokens import token_byte_table
from persona_tui.errors import ConfigError, ModelLoadError, ScenarioError, SessionError
from persona_tui.models.config import load_config
from persona_tui.models.scan import mlx_weights
from persona_tui.scenario.importers import em_questions_to_scenario, trait_to_scenario
from persona_tui.scenario.parse import load_scenario
from persona_tui.scenario.rules import load_rules
from persona_tui.scoring.judge import load_rubric_file
from persona_tui.scoring.judgements import load_judge_file, sidecar_path
from persona_tui.session.store import load_session
from persona_tui.ui.themes import load_theme_file
from tests.analysis_sessions import SessionSpec, TrialSpec, write_session
from tests.scenario_text import SMALL_SCENARIO

DEPTH = 5000
DEEP_TOML = "x = " + "[" * DEPTH + "]" * DEPTH + "\n"
DEEP_JSON = "[" * DEPTH + "]" * DEPTH


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_validate_reports_a_deep_scenario_in_one_line(tmp_path: Path) -> None:
    file = _write(tmp_path / "deep.toml", 'id = "deep"\n' + DEEP_TOML)
    done = subprocess.run(
        [sys.executable, "-m", "persona_tui", "validate", str(file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output and "RecursionError" not in output
    lines = [line for line in output.splitlines() if str(file) in line]
    assert lines == [f"{file}:2: invalid TOML: nested more than 100 levels deep"], output


def test_the_parsers_name_file_and_line() -> None:
    text = "a = 1\n\n" + DEEP_TOML
    with pytest.raises(DataFileError, match=r"^f\.toml:3: invalid TOML: nested more than 100"):
        loads_toml(text, "f.toml")
    with pytest.raises(DataFileError, match=r"^f\.json:1: invalid JSON: nested more than 100"):
        loads_json(DEEP_JSON.encode(), "f.json")
    with pytest.raises(
        ConfigError, match=r"^f\.toml:1: invalid TOML: a number with more than 4300 digits$"
    ):
        loads_toml("a = " + "9" * 5000, "f.toml", ConfigError)
    with pytest.raises(ScenarioError) as caught:
        loads_toml('s = "[[[[" # [[[\n' + DEEP_TOML, "f.toml", ScenarioError)
    assert caught.value.problems == ["f.toml:2: invalid TOML: nested more than 100 levels deep"]
    with pytest.raises(DataFileError, match=r"^f\.yaml:2: invalid YAML: nested more than 100"):
        loads_yaml("a: 1\nb: " + DEEP_JSON, "f.yaml")
    with pytest.raises(DataFileError, match=r"^f\.yaml: invalid YAML: month must be in 1\.\.12"):
        loads_yaml("a: 2001-13-01\n", "f.yaml")


def test_scenario_session_config_theme(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="nested more than"):
        load_scenario(_write(tmp_path / "s.toml", SMALL_SCENARIO + DEEP_TOML))
    with pytest.raises(
        ScenarioError, match=r"s\.toml:1: invalid TOML: a number with more than 4300"
    ):
        load_scenario(_write(tmp_path / "s.toml", "seed = " + "1" * 5000 + "\n"))
    session = write_session(tmp_path / "session.toml", SessionSpec(trials=[TrialSpec("a", "b", 0)]))
    _write(session, session.read_text("utf-8") + DEEP_TOML)
    with pytest.raises(SessionError, match=r"session\.toml:\d+: not valid TOML \(nested more"):
        load_session(session)
    with pytest.raises(ConfigError, match=r"c\.toml:1: invalid TOML: nested more than"):
        load_config(_write(tmp_path / "c.toml", DEEP_TOML))
    theme = _write(tmp_path / "t.toml", DEEP_TOML)
    assert load_theme_file(theme) == (
        None,
        [f"{theme}:1: invalid TOML: nested more than 100 levels deep"],
    )


def test_session_without_rtoml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rtoml", None)  # makes `import rtoml` fail
    session = _write(tmp_path / "session.toml", "format_version = 1\n" + DEEP_TOML)
    with pytest.raises(SessionError, match=r"session\.toml:2: not valid TOML \(nested more"):
        load_session(session)


def test_judge_rubric_rules(tmp_path: Path) -> None:
    session = tmp_path / "s.toml"
    _write(sidecar_path(session), DEEP_TOML)
    with pytest.raises(SessionError, match=r"\.judge\.toml:1: not valid TOML \(nested more|:1: "):
        load_judge_file(session, "s")
    with pytest.raises(ScenarioError, match=r"r\.toml:1: invalid TOML: nested more"):
        load_rubric_file(_write(tmp_path / "r.toml", DEEP_TOML))
    with pytest.raises(ScenarioError, match=r"rules\.toml:1: invalid TOML: nested more"):
        load_rules(_write(tmp_path / "rules.toml", DEEP_TOML))


def test_importers(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    with pytest.raises(ScenarioError, match=r"q\.yaml:1: invalid YAML: nested more"):
        em_questions_to_scenario(_write(tmp_path / "q.yaml", DEEP_JSON))
    with pytest.raises(ScenarioError, match=r"q\.yaml: invalid YAML: month must be"):
        em_questions_to_scenario(_write(tmp_path / "q.yaml", "- id: 2001-13-01\n"))
    with pytest.raises(ScenarioError, match=r"t\.json:1: invalid JSON: nested more"):
        trait_to_scenario(_write(tmp_path / "t.json", DEEP_JSON))


def test_model_files_and_caches(tmp_path: Path) -> None:
    folder = tmp_path / "mlx"
    folder.mkdir()
    _write(folder / "config.json", DEEP_JSON)
    _write(folder / "tokenizer.json", DEEP_JSON)
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"config\.json:1: invalid JSON: nested more"):
        read_model_config(folder)
    assert mlx_weights(folder, ["config.json", "model.safetensors", "tokenizer.json"]) == []
    assert token_byte_table(folder, object()) is None
    _write(folder / "tokenizer.json", "[1, 2]")  # valid JSON, not an object
    assert token_byte_table(folder, object()) is None
    assert _read_hash_cache(_write(tmp_path / "hashes.json", DEEP_JSON)) == {}
    session = write_session(tmp_path / "a.toml", SessionSpec(trials=[TrialSpec("a", "b", 0)]))
    entry = _entry_path(session)
    entry.parent.mkdir(parents=True, exist_ok=True)
    _write(entry, DEEP_JSON)
    assert load_for_analysis(session)[0] == load_session(session)  # ignored and rebuilt
    assert json.loads(entry.read_text("utf-8"))["key"]
