"""Batch plans that make prompt-cache reuse exact (persona_tui.backends.llamacpp.batching)."""

from __future__ import annotations

from persona_tui.backends.llamacpp.batching import batch_ends, reusable_prefix, split_points


def test_plain_plan_is_aligned_to_absolute_blocks() -> None:
    assert batch_ends(300, 128) == (128, 256, 300)
    assert batch_ends(128, 128) == (128,)
    assert batch_ends(5, 128) == (5,)


def test_split_ends_a_batch_and_the_rest_is_tiled_from_it() -> None:
    assert batch_ends(300, 128, split=200) == (128, 200, 300)
    assert batch_ends(500, 128, split=200) == (128, 200, 328, 456, 500)
    assert batch_ends(300, 128, split=0) == batch_ends(300, 128)
    assert batch_ends(300, 128, split=300) == batch_ends(300, 128)  # no room after it


def test_reuse_stops_at_a_shared_batch_end_within_the_common_tokens() -> None:
    framing = list(range(200))
    first, second = [*framing, 1, 2, 3], [*framing, 7, 8]
    ends_first = batch_ends(len(first), 128, split=200)
    ends_second = batch_ends(len(second), 128, split=200)
    assert reusable_prefix(first, ends_first, second, ends_second) == 200
    # without the split hint only the whole block is reusable
    plain = batch_ends(len(first), 128), batch_ends(len(second), 128)
    assert reusable_prefix(first, plain[0], second, plain[1]) == 128


def test_reuse_never_covers_the_last_batch_or_differing_plans() -> None:
    prompt = list(range(200))
    ends = batch_ends(200, 128, split=150)
    assert reusable_prefix(prompt, ends, prompt, ends) == 150  # same prompt: re-evaluate tail
    other_split = batch_ends(200, 128, split=140)
    assert reusable_prefix(prompt, ends, prompt, other_split) == 128
    changed = [*prompt[:100], -1, *prompt[101:]]
    assert reusable_prefix(prompt, ends, changed, ends) == 0


def test_split_points_follow_the_plan_from_any_start() -> None:
    ends = batch_ends(500, 128, split=200)
    assert split_points(0, 500, ends) == [128, 72, 128, 128, 44]
    assert split_points(200, 300, ends) == [128, 128, 44]
    assert split_points(500, 1, ends) == [1]  # generated tokens: one at a time
