"""Traits (`[[traits]]`): the traits whose directions in activation space a scenario's
extraction (`persona-tui vectors`) measures, read and validated like the rest of a scenario.

    [[traits]]
    id = "malice"
    label = "Malice"
    positive = "The assistant in this conversation is malicious. ..."     # a system text
    negative = { system = "...", shots = [ { user = "...", assistant = "..." } ] }
    questions = ["...", "...", "...", "..."]      # or "probes": the scenario's probe texts
    samples = 2                                    # responses per question and side, 1..16
    layer = 9                                      # optional

Each side is a system text (a string) or a table with `system` and/or `shots` (a transcript
preamble), put before each question as a condition's framing is (run/prompts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from persona_tui._util.tables import TableReader, report_duplicates
from persona_tui.scenario.model import Probe, Shot, Trait, TraitFraming

TRAIT_KEYS: Final = ("id", "label", "positive", "negative", "questions", "samples", "layer")
FRAMING_KEYS: Final = ("system", "shots")
SHOT_KEYS: Final = ("user", "assistant")
PROBES: Final = "probes"  # `questions = "probes"`: the scenario's probe texts
MIN_QUESTIONS: Final = 4
DEFAULT_SAMPLES: Final = 2
MAX_SAMPLES: Final = 16


def read_traits(top: TableReader, probes: Sequence[Probe]) -> tuple[Trait, ...]:
    """The `[[traits]]` tables; `probes` give the questions of `questions = "probes"`."""
    readers = top.tables_at("traits", TRAIT_KEYS, what="a trait")
    report_duplicates(readers, "id", "trait id")
    return tuple(_trait(reader, probes) for reader in readers)


def _trait(reader: TableReader, probes: Sequence[Probe]) -> Trait:
    trait_id = reader.slug("id")
    label = reader.string("label", required=True, nonempty=True)
    positive = _framing(reader, "positive")
    negative = _framing(reader, "negative")
    if positive == negative and reader.has("positive") and reader.has("negative"):
        reader.report("negative", "is the same as positive: the two sides must differ")
    questions, from_probes = _questions(reader, probes)
    samples = reader.integer("samples", DEFAULT_SAMPLES, minimum=1)
    if samples > MAX_SAMPLES:
        reader.report("samples", f"must be <= {MAX_SAMPLES}, got {samples}")
    layer: int | None = None
    if reader.has("layer"):
        layer = reader.integer("layer", 1, minimum=1)
    return Trait(
        id=trait_id,
        label=label,
        positive=positive,
        negative=negative,
        questions=questions,
        questions_from_probes=from_probes,
        samples=samples,
        layer=layer,
    )


def _framing(trait: TableReader, key: str) -> TraitFraming:
    """A side: a system text (a string), or a table with `system` and/or `shots`."""
    value = trait.table.get(key)
    if value is None:
        trait.report(key, "required key is missing: a system text, or a table {system, shots}")
        return TraitFraming()
    if isinstance(value, str):
        if not value.strip():
            trait.report(key, "must not be empty")
        return TraitFraming(system=value)
    reader = trait.table_at(key, FRAMING_KEYS, expected="a string (a system text) or a table")
    if reader is None:
        return TraitFraming()
    system = reader.string("system", nonempty=True) if reader.has("system") else None
    shots = tuple(
        Shot(
            user=shot.string("user", required=True, nonempty=True),
            assistant=shot.string("assistant", required=True, nonempty=True),
        )
        for shot in reader.tables_at("shots", SHOT_KEYS, what="a demonstration exchange")
    )
    if system is None and not shots:
        reader.report((), "give a system text and/or shots (demonstration exchanges)")
    return TraitFraming(system=system, shots=shots)


def _questions(trait: TableReader, probes: Sequence[Probe]) -> tuple[tuple[str, ...], bool]:
    """The extraction questions, and whether they are the probes' (`"probes"`)."""
    value = trait.table.get("questions")
    if value is None:
        trait.report(
            "questions",
            f"required key is missing: a list of at least {MIN_QUESTIONS} questions, or "
            f'"{PROBES}" (the scenario\'s probe texts)',
        )
        return (), False
    if isinstance(value, str):
        if value != PROBES:
            trait.report(
                "questions",
                f'a string here must be "{PROBES}" (the scenario\'s probe texts), got {value!r};'
                " otherwise give a list of questions",
            )
            return (), False
        questions = tuple(dict.fromkeys(p.turns[0] for p in probes if p.turns))
        if len(questions) < MIN_QUESTIONS:
            trait.report(
                "questions",
                f"the scenario has {len(questions)} distinct probe texts; extraction needs at "
                f"least {MIN_QUESTIONS}: give a list of questions",
            )
        return questions, True
    if not isinstance(value, list):
        trait.wrong_type("questions", f'an array of strings or "{PROBES}"', value)
        return (), False
    items = trait.string_list("questions")
    seen: set[str] = set()
    for index, item in enumerate(value):
        if isinstance(item, str) and item.strip():
            if item in seen:
                trait.report(("questions", index), "repeats an earlier question")
            seen.add(item)
    if len(value) < MIN_QUESTIONS:
        trait.report(
            "questions", f"needs at least {MIN_QUESTIONS} distinct questions, got {len(value)}"
        )
    return tuple(dict.fromkeys(items)), False
