"""Steering in the scenario format: a condition's `steer` table, and the steering sweep.

A condition may steer the model along a trait's direction while it answers:

    [[conditions]]
    id = "steered"
    label = "Steered towards malice"
    steer = { trait = "malice", scale = 4.0, layer = 9 }   # layer optional

`scale` times the trait's direction (the raw difference of means the extraction saved) is
added to the residual stream at `layer` (absent: the trait's `layer`, else the layer its
extraction recommends). The trait need not be declared in this scenario: its vectors may
come from another scenario's extraction (`run --vectors DIR`).

A sweep is one line: `scale = [-8, -4, 0, 4, 8]` expands the condition into one derived
condition per scale, in the order written, each with a single-scale `Steer`. A derived
condition's id is `<condition>--s<scale>`, the scale written with the id grammar's
characters (lowercase letters, digits, '-', '_'): an integer as is (`steered--s4`,
`steered--s-4`, `steered--s0`), a fraction with '_' for the decimal point
(`steered--s2_5`, `steered--s-0_25`), an exponent without '+' (`steered--s1e-05`). Its
label is the condition's with the trait and signed scale (`Steered · malice +4`).

Seeds: a trial's seed derives from a condition id (run/plan.trial_seed). Every derived
condition records the written condition's id as `seed_id` (`Condition.seed_condition`),
so sample k of probe p has the same seed at every scale of a sweep: the scales differ in
the steering only (common random numbers for a dose-response). A test framing applied to a
derived condition seeds from `<seed_condition>--<framing>`, so the same holds under each
test framing, and a condition without a sweep seeds from its own id, as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Final

from persona_tui._util.tables import TableReader
from persona_tui.scenario.model import Condition, Steer

STEER_KEYS: Final = ("trait", "scale", "layer")
SEPARATOR: Final = "--"  # between the condition's id and the scale's (as test framings')
MAX_SCALES: Final = 32


def read_steer(condition: TableReader) -> tuple[Steer | None, tuple[float, ...]]:
    """A condition's `steer` table: its Steer (the first scale, for a sweep) and the sweep's
    scales (() when `scale` is one number)."""
    reader = condition.table_at("steer", STEER_KEYS, expected="a table {trait, scale, layer}")
    if reader is None:
        return None, ()
    trait = reader.slug("trait")
    layer: int | None = None
    if reader.has("layer"):
        layer = reader.integer("layer", 1, minimum=1)
    value = reader.table.get("scale")
    if isinstance(value, list):
        scales = _scales(reader, value)
        first = scales[0] if scales else 0.0
        return Steer(trait, first, layer), scales
    if value is None:
        reader.report("scale", "required key is missing: a number, or a list of them (a sweep)")
        return Steer(trait, 0.0, layer), ()
    if isinstance(value, bool) or not isinstance(value, int | float):
        reader.wrong_type("scale", "a number or an array of numbers (a sweep)", value)
        return Steer(trait, 0.0, layer), ()
    return Steer(trait, reader.number("scale", 0.0), layer), ()


def _scales(reader: TableReader, values: list[object]) -> tuple[float, ...]:
    if not values:
        reader.report("scale", "a sweep needs at least one scale")
    if len(values) > MAX_SCALES:
        reader.report("scale", f"at most {MAX_SCALES} scales in a sweep, got {len(values)}")
    scales: list[float] = []
    for index, item in enumerate(values):
        if isinstance(item, bool) or not isinstance(item, int | float):
            reader.wrong_type(("scale", index), "a number", item)
            continue
        number = float(item)
        if not math.isfinite(number):
            reader.report(("scale", index), f"must be a finite number, got {item}")
        elif number in scales:
            reader.report(("scale", index), f"repeats the scale {item} (each scale once)")
        else:
            scales.append(number)
    return tuple(scales)


def scale_token(scale: float) -> str:
    """A scale as the id grammar allows it: `4`, `-4`, `0`, `2_5`, `-0_25`, `1e-05`."""
    scale = float(scale)
    if scale == 0:
        return "0"
    text = str(int(scale)) if scale.is_integer() and abs(scale) < 1e15 else repr(scale)
    return text.replace(".", "_").replace("+", "")


def swept_id(condition_id: str, scale: float) -> str:
    """The id of the condition a sweep derives from `condition_id` at `scale`."""
    return f"{condition_id}{SEPARATOR}s{scale_token(scale)}"


def swept_conditions(
    readers: Sequence[TableReader],
    conditions: Sequence[Condition],
    sweeps: Mapping[str, tuple[float, ...]],
) -> tuple[Condition, ...]:
    """The written conditions with each swept one replaced, in place, by its derived
    conditions (one per scale, in the order written). `readers` are the written
    conditions' tables (problems are reported there); `sweeps` maps a condition id to its
    scales."""
    written = {c.id for c in conditions}
    result: list[Condition] = []
    for reader, condition in zip(readers, conditions, strict=False):
        scales = sweeps.get(condition.id, ())
        if not scales or condition.steer is None:
            result.append(condition)
            continue
        if condition.training is not None:
            reader.report(
                ("steer", "scale"),
                "a sweep cannot expand a training condition (its adapter is trained under "
                "its own id): give it one scale, or sweep a condition without "
                "[conditions.training]",
            )
            result.append(condition)
            continue
        for scale in scales:
            derived = swept_id(condition.id, scale)
            if derived in written:
                reader.report(("steer", "scale"), f"the sweep's {derived!r} repeats a condition id")
            result.append(
                replace(
                    condition,
                    id=derived,
                    label=f"{condition.label} · {condition.steer.trait} {scale:+g}",
                    steer=replace(condition.steer, scale=scale),
                    source=condition.id,
                    seed_id=condition.seed_condition,
                )
            )
    return tuple(result)
