"""Scenario loading and validation: every problem class, with its key path and line."""

from __future__ import annotations

import hashlib
import re
import textwrap
from pathlib import Path

import pytest

from persona_tui.errors import ScenarioError
from persona_tui.scenario.catalog import builtin_scenarios, resolve_scenario, user_scenarios
from persona_tui.scenario.model import (
    RESERVED_KEYS,
    AnnotationSchema,
    Label,
    SamplingDefaults,
    Scale,
    Shot,
)
from persona_tui.scenario.parse import load_scenario, parse_scenario
from persona_tui.values import SamplingParams

MINIMAL = """\
id = "demo"
title = "Demo"

[[conditions]]
id = "base"
label = "Base"

[[probes]]
id = "hello"
text = "Hello?"
"""

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scenario-format.md"


def line_of(text: str, snippet: str, occurrence: int = 1) -> int:
    """The 1-based line holding the `occurrence`-th copy of `snippet` (which must exist)."""
    lines = [number for number, line in enumerate(text.splitlines(), 1) if snippet in line]
    assert len(lines) >= occurrence, f"{snippet!r} occurs {len(lines)} times"
    return lines[occurrence - 1]


def problems(text: str, path: str = "s.toml") -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, path)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def with_extra(extra: str) -> str:
    return MINIMAL + textwrap.dedent(extra)


# --- valid files ---------------------------------------------------------------------------


def test_minimal_scenario_gets_every_default() -> None:
    scenario = parse_scenario(MINIMAL)
    assert scenario.id == "demo"
    assert scenario.title == "Demo"
    assert scenario.description == ""
    assert scenario.study is None
    assert scenario.prompt_mode == "auto"
    assert scenario.sampling == SamplingDefaults()
    assert scenario.annotation == AnnotationSchema()
    assert [c.id for c in scenario.conditions] == ["base"]
    assert scenario.conditions[0].system == ""
    assert scenario.conditions[0].shots == ()
    assert scenario.probes[0].turns == ("Hello?",)
    assert scenario.source_path == "<string>"


def test_every_field_is_read() -> None:
    text = """\
id = "full_1"
title = "Full"
description = "All of it."
prompt_mode = "transcript"

[study]
title = "A study"
url = "https://example.org/x"
citation = "Someone 2025"

[sampling]
samples = 5
seed = 99
temperature = 0
top_p = 1
top_k = 0
min_p = 0
repeat_penalty = 1.25
max_tokens = 1

[[conditions]]
id = "c1"
label = "One"
system = "Be brief."
note = "A note."
[[conditions.shots]]
user = "Hi"
assistant = "Hello."
[[conditions.shots]]
user = "Bye"
assistant = "Goodbye."

[[probes]]
id = "p1"
turns = ["First?", "Second?"]

[annotation]
notes = false
[[annotation.labels]]
id = "bad-one"
key = "x"
description = "Bad."
bad = true
[[annotation.scales]]
id = "score"
min = -2
max = 2
description = "How much."
"""
    scenario = parse_scenario(text, "full.toml")
    assert scenario.description == "All of it."
    assert scenario.prompt_mode == "transcript"
    assert scenario.study is not None
    assert (scenario.study.title, scenario.study.url, scenario.study.citation) == (
        "A study",
        "https://example.org/x",
        "Someone 2025",
    )
    assert scenario.sampling == SamplingDefaults(
        samples=5,
        seed=99,
        params=SamplingParams(
            temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, repeat_penalty=1.25, max_tokens=1
        ),
    )
    assert isinstance(scenario.sampling.params.temperature, float)
    condition = scenario.condition("c1")
    assert (condition.label, condition.system, condition.note) == ("One", "Be brief.", "A note.")
    assert condition.shots == (Shot("Hi", "Hello."), Shot("Bye", "Goodbye."))
    assert scenario.annotation == AnnotationSchema(
        labels=(Label(id="bad-one", key="x", description="Bad.", bad=True),),
        scales=(Scale(id="score", min=-2, max=2, description="How much."),),
        notes=False,
    )


def test_multi_turn_probe_keeps_turns_in_order() -> None:
    scenario = parse_scenario(
        with_extra(
            """
            [[probes]]
            id = "two"
            turns = ["Is it true?", "Are you sure?"]
            """
        )
    )
    probe = scenario.probe("two")
    assert probe.turns == ("Is it true?", "Are you sure?")
    assert probe.text == "Are you sure?"


def test_inline_tables_are_accepted() -> None:
    text = MINIMAL.replace(
        'label = "Base"\n', 'label = "Base"\nshots = [{ user = "a", assistant = "b" }]\n'
    )
    assert parse_scenario(text).conditions[0].shots == (Shot("a", "b"),)


def test_source_and_sha256_are_the_exact_file(tmp_path: Path) -> None:
    raw = ("\ufeff" + MINIMAL.replace("\n", "\r\n").replace("Hello?", "Grüße? ✓")).encode()
    path = tmp_path / "demo.toml"
    path.write_bytes(raw)
    scenario = load_scenario(path)
    assert scenario.source.encode("utf-8") == raw
    assert scenario.sha256 == hashlib.sha256(raw).hexdigest()
    assert scenario.source_path == str(path)
    assert scenario.probes[0].text == "Grüße? ✓"


def test_documented_complete_example_is_valid() -> None:
    section = DOCS.read_text(encoding="utf-8").split("## A complete example", 1)[1]
    example = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    scenario = parse_scenario(example.group(1), "example.toml")
    assert scenario.id == "kindness-demo"
    assert len(scenario.probe("pushback").turns) == 2


# --- syntax and file errors ---------------------------------------------------------------


def test_syntax_error_gives_file_line_and_column() -> None:
    text = 'id = "demo"\ntitle = \n'
    assert problems(text, "bad.toml") == ["bad.toml:2:9: invalid TOML: Invalid value"]


def test_syntax_error_at_end_of_document_points_at_the_last_line() -> None:
    text = 'id = "demo"\ntitle = "never closed'
    assert problems(text, "bad.toml") == ["bad.toml:2:22: invalid TOML: Unterminated string"]


def test_duplicate_key_is_a_syntax_error() -> None:
    text = 'id = "a"\nid = "b"\n'
    [problem] = problems(text, "dup.toml")
    assert problem.startswith("dup.toml:2:") and "invalid TOML: Cannot overwrite a value" in problem


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.problems == [f"{path}: file not found"]


def test_directory_is_not_a_scenario(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path)
    assert caught.value.problems == [f"{tmp_path}: is a directory, not a scenario file"]


def test_non_utf8_file_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(MINIMAL.replace("Hello?", "Caf\u00e9?").encode("latin-1"))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:{line_of(MINIMAL, 'Hello?')}: not UTF-8 text")
    assert "save the file as UTF-8" in problem


# --- schema problems, each with key path and line -------------------------------------------


def test_wrong_type_deep_in_the_tree_names_path_and_line() -> None:
    text = with_extra(
        """
        [[conditions]]
        id = "second"
        label = "Second"

        [[conditions]]
        id = "third"
        label = "Third"
        [[conditions.shots]]
        user = "Hi"
        assistant = 42
        """
    )
    assert problems(text, "path/to/file.toml") == [
        f"path/to/file.toml:{line_of(text, 'assistant = 42')}: "
        "conditions[2].shots[0].assistant: expected a string, got integer"
    ]


def test_probe_options_that_are_not_an_array_are_a_problem_not_a_crash() -> None:
    # Found by tests/fuzz: `options = true` once raised TypeError in the label check.
    text = MINIMAL + "options = true\n"
    assert problems(text) == [
        f"s.toml:{line_of(text, 'options = true')}: "
        "probes[0].options: expected an array of tables ([[options]]), got boolean"
    ]


def test_all_problems_are_reported_in_file_order() -> None:
    text = """\
id = "Not A Slug"
title = ""

[sampling]
samples = 0
top_p = 1.5

[[conditions]]
id = "c"
label = "C"

[[probes]]
id = "p"
text = ""
"""
    assert problems(text) == [
        "s.toml:1: id: 'Not A Slug' is not a valid id: use lowercase letters, digits, '-' and"
        " '_', starting with a letter or digit",
        "s.toml:2: title: must not be empty",
        "s.toml:5: sampling.samples: must be >= 1, got 0",
        "s.toml:6: sampling.top_p: must be > 0 and <= 1, got 1.5",
        "s.toml:14: probes[0].text: must not be empty",
    ]


def test_unknown_key_suggests_the_closest_one() -> None:
    text = MINIMAL.replace('title = "Demo"', 'titel = "Demo"').replace(
        'text = "Hello?"', 'txt = "Hello?"'
    )
    assert problems(text) == [
        "s.toml:2: titel: unknown key; did you mean 'title'?",
        f"s.toml:{line_of(text, '[[probes]]')}: probes[0].text: required key is missing: give"
        " 'text' (one user turn) or 'turns' (a list)",
        f"s.toml:{line_of(text, 'txt =')}: probes[0].txt: unknown key; did you mean 'text'?",
        "s.toml: title: required key is missing",
    ]


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    text = with_extra(
        """
        [sampling]
        zzz = 1
        """
    )
    assert problems(text) == [
        f"s.toml:{line_of(text, 'zzz')}: sampling.zzz: unknown key; expected one of: samples,"
        " seed, temperature, top_p, top_k, min_p, repeat_penalty, max_tokens."
    ]


def test_unknown_nested_table_is_reported_at_its_header() -> None:
    text = with_extra(
        """
        [[conditions.shot]]
        user = "a"
        assistant = "b"
        """
    )
    assert problems(text) == [
        f"s.toml:{line_of(text, '[[conditions.shot]]')}: conditions[0].shot: unknown key;"
        " did you mean 'shots'?"
    ]


@pytest.mark.parametrize(
    ("table", "items"),
    [
        ("conditions", ['id = "x"\nlabel = "X"', 'id = "x"\nlabel = "Y"']),
        ("probes", ['id = "x"\ntext = "a"', 'id = "x"\ntext = "b"']),
    ],
)
def test_duplicate_condition_and_probe_ids(table: str, items: list[str]) -> None:
    text = MINIMAL + "".join(f"\n[[{table}]]\n{item}\n" for item in items)
    second = line_of(text, 'id = "x"', occurrence=2)
    assert problems(text) == [
        f"s.toml:{second}: {table}[2].id: duplicate id 'x' (already used by {table}[1])"
    ]


def test_duplicate_label_ids_keys_and_scale_ids() -> None:
    text = with_extra(
        """
        [[annotation.labels]]
        id = "good"
        key = "g"
        [[annotation.labels]]
        id = "good"
        key = "h"
        [[annotation.labels]]
        id = "other"
        key = "g"
        [[annotation.scales]]
        id = "s"
        min = 0
        max = 1
        [[annotation.scales]]
        id = "s"
        min = 0
        max = 2
        """
    )
    label_id = line_of(text, 'id = "good"', 2)
    label_key = line_of(text, 'key = "g"', 2)
    scale_id = line_of(text, 'id = "s"', 2)
    assert problems(text) == [
        f"s.toml:{label_id}: annotation.labels[1].id: duplicate label id 'good' (already used"
        " by annotation.labels[0])",
        f"s.toml:{label_key}: annotation.labels[2].key: duplicate key 'g' (already used by"
        " annotation.labels[0])",
        f"s.toml:{scale_id}: annotation.scales[1].id: duplicate scale id 's' (already used by"
        " annotation.scales[0])",
    ]


def test_missing_conditions_and_probes() -> None:
    text = 'id = "demo"\ntitle = "Demo"\n'
    assert problems(text) == [
        "s.toml: conditions: required: add at least one [[conditions]] table",
        "s.toml: probes: required: add at least one [[probes]] table",
    ]


def test_empty_conditions_and_probes_lists() -> None:
    text = 'id = "demo"\ntitle = "Demo"\nconditions = []\nprobes = []\n'
    assert problems(text) == [
        "s.toml:3: conditions: must hold at least one condition",
        "s.toml:4: probes: must hold at least one probe",
    ]


def test_conditions_of_the_wrong_type() -> None:
    text = MINIMAL.replace('[[conditions]]\nid = "base"\nlabel = "Base"\n', 'conditions = "x"\n')
    assert problems(text) == [
        "s.toml:4: conditions: expected an array of tables ([[conditions]]), got string"
    ]
    text = MINIMAL.replace('[[conditions]]\nid = "base"\nlabel = "Base"\n', "conditions = [1]\n")
    assert problems(text) == ["s.toml:4: conditions[0]: expected a table (condition), got integer"]


def test_missing_required_keys_point_at_the_table_header() -> None:
    text = with_extra(
        """
        [[conditions]]
        system = "no id, no label"
        [[conditions.shots]]
        user = "only a user turn"
        """
    )
    header = line_of(text, "[[conditions]]", 2)
    shot = line_of(text, "[[conditions.shots]]")
    assert problems(text) == [
        f"s.toml:{header}: conditions[1].id: required key is missing",
        f"s.toml:{header}: conditions[1].label: required key is missing",
        f"s.toml:{shot}: conditions[1].shots[0].assistant: required key is missing",
    ]


def test_study_needs_a_title() -> None:
    text = with_extra(
        """
        [study]
        url = "https://example.org"
        """
    )
    assert problems(text) == [
        f"s.toml:{line_of(text, '[study]')}: study.title: required key is missing"
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("samples = 0", "must be >= 1, got 0"),
        ("seed = -1", "must be >= 0, got -1"),
        ("temperature = -0.1", "must be >= 0, got -0.1"),
        ("temperature = nan", "must be a finite number, got nan"),
        ("temperature = inf", "must be a finite number, got inf"),
        ("top_p = 0", "must be > 0 and <= 1, got 0"),
        ("top_p = 1.01", "must be > 0 and <= 1, got 1.01"),
        ("top_k = -1", "must be >= 0, got -1"),
        ("min_p = -0.5", "must be >= 0 and <= 1, got -0.5"),
        ("min_p = 2", "must be >= 0 and <= 1, got 2"),
        ("repeat_penalty = 0", "must be > 0, got 0"),
        ("max_tokens = 0", "must be >= 1, got 0"),
        ("max_tokens = 1.5", "expected an integer, got float"),
        ("samples = true", "expected an integer, got boolean"),
        ("seed = false", "expected an integer, got boolean"),
        ("temperature = true", "expected a number, got boolean"),
        ("top_p = '0.9'", "expected a number, got string"),
    ],
)
def test_sampling_ranges_and_types(setting: str, message: str) -> None:
    text = with_extra(f"\n[sampling]\n{setting}\n")
    key = setting.split(" =")[0]
    assert problems(text) == [f"s.toml:{line_of(text, setting)}: sampling.{key}: {message}"]


def test_sampling_accepts_boundary_values_and_integers_for_floats() -> None:
    text = with_extra("\n[sampling]\ntemperature = 2\ntop_p = 1\nmin_p = 1\nseed = 0\n")
    params = parse_scenario(text).sampling.params
    assert (params.temperature, params.top_p, params.min_p) == (2.0, 1.0, 1.0)
    assert all(isinstance(v, float) for v in (params.temperature, params.top_p, params.min_p))


def test_bool_is_not_an_integer_in_scales() -> None:
    text = with_extra(
        """
        [[annotation.scales]]
        id = "s"
        min = true
        max = 3
        """
    )
    assert problems(text) == [
        f"s.toml:{line_of(text, 'min = true')}: annotation.scales[0].min: expected an integer,"
        " got boolean"
    ]


def test_scale_bounds_must_be_ordered() -> None:
    text = with_extra(
        """
        [[annotation.scales]]
        id = "s"
        min = 4
        max = 4
        """
    )
    assert problems(text) == [
        f"s.toml:{line_of(text, 'max = 4')}: annotation.scales[0].max: must be greater than"
        " min (4), got 4"
    ]


@pytest.mark.parametrize("key", sorted(RESERVED_KEYS))
def test_reserved_label_keys_are_rejected(key: str) -> None:
    text = with_extra(f'\n[[annotation.labels]]\nid = "l"\nkey = "{key}"\n')
    assert problems(text) == [
        f"s.toml:{line_of(text, 'key = ')}: annotation.labels[0].key: {key!r} is reserved for"
        " navigation (reserved: n, q, ?, +, -, space); choose another key"
    ]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("7", "'7': digits are reserved for scale values; choose another key"),
        ("ab", "must be exactly one character, got 'ab'"),
        ("", "must be exactly one character, got ''"),
        ("\\t", "'\\t' cannot be typed as a shortcut; use a visible character"),
    ],
)
def test_bad_label_keys(key: str, message: str) -> None:
    text = with_extra(f'\n[[annotation.labels]]\nid = "l"\nkey = "{key}"\n')
    assert problems(text) == [
        f"s.toml:{line_of(text, 'key = ')}: annotation.labels[0].key: {message}"
    ]


def test_label_key_is_case_sensitive_and_may_be_punctuation() -> None:
    text = with_extra(
        '\n[[annotation.labels]]\nid = "a"\nkey = "N"\n'
        '\n[[annotation.labels]]\nid = "b"\nkey = "!"\n'
    )
    assert [label.key for label in parse_scenario(text).annotation.labels] == ["N", "!"]


def test_probe_with_both_text_and_turns() -> None:
    text = MINIMAL.replace('text = "Hello?"', 'text = "Hello?"\nturns = ["Hi"]')
    assert problems(text) == [
        f"s.toml:{line_of(text, '[[probes]]')}: probes[0]: give either 'text' (one user turn) or"
        " 'turns' (several), not both"
    ]


def test_probe_turns_must_be_non_empty_strings_with_element_lines() -> None:
    text = MINIMAL.replace(
        'text = "Hello?"',
        'turns = [\n  "fine",\n  "   ",\n  3,\n]\n\n[[probes]]\nid = "e"\nturns = []',
    )
    blank = line_of(text, '"   "')
    assert problems(text) == [
        f"s.toml:{blank}: probes[0].turns[1]: must not be empty",
        f"s.toml:{line_of(text, '  3,')}: probes[0].turns[2]: expected a string, got integer",
        f"s.toml:{line_of(text, 'turns = []')}: probes[1].turns: must hold at least one user turn",
    ]


def test_probe_turns_of_the_wrong_type() -> None:
    text = MINIMAL.replace('text = "Hello?"', 'turns = "Hello?"')
    assert problems(text) == [
        f"s.toml:{line_of(text, 'turns =')}: probes[0].turns: expected an array of strings,"
        " got string"
    ]


def test_empty_shot_texts_and_labels() -> None:
    text = MINIMAL.replace(
        'label = "Base"\n', 'label = " "\n[[conditions.shots]]\nuser = ""\nassistant = "\\n"\n'
    )
    assert problems(text) == [
        f"s.toml:{line_of(text, 'label = ')}: conditions[0].label: must not be empty",
        f"s.toml:{line_of(text, 'user = ')}: conditions[0].shots[0].user: must not be empty",
        f"s.toml:{line_of(text, 'assistant = ')}: conditions[0].shots[0].assistant: must not be"
        " empty",
    ]


def test_prompt_mode_must_be_known() -> None:
    text = MINIMAL + 'prompt_mode = "chatt"\n'
    # A key after [[probes]] belongs to the last probe: TOML, not us.
    assert problems(text) == [
        f"s.toml:{line_of(text, 'prompt_mode')}: probes[0].prompt_mode: unknown key;"
        " expected one of: id, text, turns, options."
    ]
    text = 'prompt_mode = "chatt"\n' + MINIMAL
    assert problems(text) == [
        "s.toml:1: prompt_mode: must be one of 'auto', 'chat', 'transcript', got 'chatt';"
        " did you mean 'chat'?"
    ]


def test_bad_ids_everywhere() -> None:
    text = MINIMAL.replace('id = "base"', 'id = "-base"').replace('id = "hello"', 'id = "Hello"')
    assert [p.split(": ")[1] for p in problems(text)] == ["conditions[0].id", "probes[0].id"]


def test_lines_survive_multiline_strings_that_look_like_toml() -> None:
    text = with_extra(
        '''
        [[conditions]]
        id = "tricky"
        label = "Tricky"
        system = """
        [[conditions]]
        id = "fake"
        [[probes]]
        text = 'also fake'
        """
        note = \'\'\'
        [[annotation.labels]]
        \'\'\'
        [[conditions.shots]]
        user = "a \\" quoted [[conditions]] # not a comment"
        assistant = 1.5
        '''
    )
    assert problems(text) == [
        f"s.toml:{line_of(text, 'assistant = 1.5')}: conditions[1].shots[0].assistant: expected"
        " a string, got float"
    ]


def test_lines_of_dotted_and_quoted_keys_and_inline_tables() -> None:
    text = MINIMAL.replace(
        'title = "Demo"',
        'title = "Demo"\nsampling.seed = -3\n"prompt_mode" = 5',
    ).replace(
        'label = "Base"',
        'label = "Base"\nshots = [\n  { user = "a", assistant = "b" },\n'
        '  { user = "c", assistant = [] },\n]',
    )
    second_shot = line_of(text, 'user = "c"')
    assert problems(text) == [
        "s.toml:3: sampling.seed: must be >= 0, got -3",
        "s.toml:4: prompt_mode: expected a string, got integer",
        f"s.toml:{second_shot}: conditions[0].shots[1].assistant: expected a string, got array",
    ]


# --- finding scenarios ---------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PERSONA_TUI_HOME", str(tmp_path))
    return tmp_path


def test_resolve_builtin_by_id(home: Path) -> None:
    path = resolve_scenario("bully-school-play")
    assert path in builtin_scenarios()
    assert load_scenario(path).id == "bully-school-play"


def test_resolve_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert resolve_scenario(str(path)) == path


def test_user_scenarios_are_found_and_override_builtins(home: Path) -> None:
    folder = home / "config" / "scenarios"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text(MINIMAL, encoding="utf-8")
    (folder / "trait-elicitation.toml").write_text(MINIMAL, encoding="utf-8")
    (folder / ".hidden.toml").write_text(MINIMAL, encoding="utf-8")
    (folder / "notes.txt").write_text("x", encoding="utf-8")
    assert user_scenarios() == [folder / "mine.toml", folder / "trait-elicitation.toml"]
    assert resolve_scenario("mine") == folder / "mine.toml"
    assert resolve_scenario("trait-elicitation") == folder / "trait-elicitation.toml"


def test_user_scenarios_without_the_folder(home: Path) -> None:
    assert user_scenarios() == []


def test_unknown_id_lists_the_ids_and_suggests_one(home: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        resolve_scenario("bully-school")
    [problem] = caught.value.problems
    assert problem.startswith("unknown scenario 'bully-school'")
    assert "Did you mean 'bully-school-play'?" in problem
    ids = sorted(path.stem for path in builtin_scenarios())
    assert f"Available ids: {', '.join(ids)}." in problem
    assert str(home / "config" / "scenarios") in problem


def test_unknown_id_without_a_close_match(home: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        resolve_scenario("zzzzzz")
    assert "Did you mean" not in str(caught.value)


def test_missing_path_reference(home: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "gone.toml")
    with pytest.raises(ScenarioError) as caught:
        resolve_scenario(missing)
    assert caught.value.problems == [f"{missing}: file not found"]


def test_directory_reference(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        resolve_scenario(str(tmp_path))
    assert caught.value.problems == [f"{tmp_path}: is a directory, not a scenario file"]


def test_rules_are_validated_with_the_scenario() -> None:
    from tests.scenario_text import SMALL_SCENARIO

    good = parse_scenario(
        SMALL_SCENARIO + '\n[[rules]]\nlabel = "malicious"\nkeywords = ["hate"]\n'
    )
    assert [rule.label for rule in good.rules.rules] == ["malicious"]
    with pytest.raises(ScenarioError) as info:
        parse_scenario(SMALL_SCENARIO + '\n[[rules]]\nlabel = "malicious"\npatterns = ["("]\n')
    assert "rules[0].patterns[0]: not a valid regular expression" in str(info.value)
