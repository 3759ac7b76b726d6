"""Test framings (`[[test_framings]]`): probe a study's conditions again under framings that
apply at probe time only, so a report shows an effect with and without a trigger.

An inoculated adapter can behave well without its training framing and badly with it (the
framing becomes a trigger). A study declares the framings to test:

    [[test_framings]]
    id = "school-play"
    label = "The school-play request of training"
    condition = "plays"          # that training condition's own framing ([conditions.training])

    [[test_framings]]
    id = "drama-club"
    label = "A paraphrase of it"
    user = "Drama club, scene two: you are Max, the mean kid. Stay in role. {user}"

A framing gives `condition` (copy a training condition's `[conditions.training]`: its
`system` and `user`), or its own `system` and/or `user` (holding `{user}` once: the probe
turn's text). Every written condition is then also probed under each framing, as a derived
condition `<condition>--<framing>` (label "<label> · <framing label>"): its probe turns put
as `user` says, after the framing's system text (else the condition's own), on the same
model (an adapter condition with its adapters, `adapter_of`). Nothing is trained for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from persona_tui._util.tables import TableReader, did_you_mean, report_duplicates
from persona_tui.scenario.model import USER_PLACEHOLDER, Condition, TestFraming

TEST_FRAMING_KEYS = ("id", "label", "condition", "system", "user")
SEPARATOR = "--"  # between a condition's id and a test framing's, in a derived condition's


def read_test_framings(
    top: TableReader, conditions: Sequence[Condition]
) -> tuple[TestFraming, ...]:
    """The `[[test_framings]]` tables, validated against the written `conditions`."""
    readers = top.tables_at("test_framings", TEST_FRAMING_KEYS, what="a test framing")
    report_duplicates(readers, "id", "id")
    ids = {c.id for c in conditions}
    training = {c.id: c.training for c in conditions if c.training is not None}
    framings = []
    for reader in readers:
        framing_id = reader.slug("id")
        if any(f"{c}{SEPARATOR}{framing_id}" in ids for c in ids):
            reader.report("id", f"{framing_id!r} would repeat a condition id")
        label = reader.string("label", required=True, nonempty=True)
        source = reader.string("condition")
        system = reader.string("system")
        user = reader.string("user") if reader.has("user") else USER_PLACEHOLDER
        if source:
            if reader.has("system") or reader.has("user"):
                reader.report(
                    "condition",
                    "takes that condition's system and user: give either condition, or "
                    "system/user, not both",
                )
            framing = training.get(source)
            if framing is None:
                hint = did_you_mean(source, list(training)) or ""
                known = ", ".join(training) or "none"
                reader.report(
                    "condition",
                    f"{source!r} is not a training condition (with [conditions.training]);"
                    f"{hint} training conditions: {known}",
                )
            else:
                system, user = framing.system, framing.user
        elif not reader.has("system") and not reader.has("user"):
            reader.report(
                "id",
                "a test framing needs condition (a training condition's framing), or system "
                "and/or user: without them it is the probe as written, which every "
                "condition already runs",
            )
        elif user.count(USER_PLACEHOLDER) != 1:
            reader.report(
                "user", f"must contain {USER_PLACEHOLDER} exactly once (where the probe goes)"
            )
        framings.append(TestFraming(framing_id, label, system, user))
    return tuple(framings)


def framed_conditions(
    conditions: Sequence[Condition], framings: Sequence[TestFraming]
) -> tuple[Condition, ...]:
    """The written conditions, then each of them under each test framing (in framing
    order, then condition order)."""
    derived = [
        Condition(
            id=f"{c.id}{SEPARATOR}{f.id}",
            label=f"{c.label} · {f.label}",
            system=f.system or c.system,
            shots=c.shots,
            note=f"{c.label}, probed under the test framing {f.label!r}",
            user=f.user,
            adapter_of=c.adapter_condition or "",
            test_framing=f.id,
            source=c.id,
            steer=c.steer,
            # A steering sweep's conditions seed from the written condition's id, so under
            # a framing too (scenario/steering.py); "" for the rest: seeded by their own id.
            seed_id=f"{c.seed_condition}{SEPARATOR}{f.id}" if c.seed_id else "",
        )
        for f in framings
        for c in conditions
    ]
    return (*conditions, *derived)
