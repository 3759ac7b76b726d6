"""Batched decoding on MLX (backends/mlx/batched.py, MlxBackend.generate_batch), for real
with mlx-lm's BatchGenerator on the tiny MLX model (tests/mlx_fixture.py)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

pytest.importorskip("mlx_lm", reason="the MLX backend needs: pip install 'persona-tui[mlx]'")

from persona_tui.backends.base import (
    BatchDone,
    BatchedGeneration,
    BatchEvent,
    BatchStarted,
    BatchText,
    GenerationRequest,
    GenerationResult,
)
from persona_tui.backends.mlx.backend import MlxBackend
from persona_tui.backends.mlx.batched import shared_prefix
from persona_tui.errors import GenerationError, ModelLoadError, PromptTooLongError
from persona_tui.values import SamplingParams
from tests import tiny_gguf
from tests.mlx_fixture import write_tiny_mlx

PROMPT = "User: what are you and the world\nAssistant:"
SAMPLING = SamplingParams(temperature=0.9, max_tokens=20, repeat_penalty=1.1)
TRANSITIONS = {
    **tiny_gguf.chain("▁Hello", "▁world", "▁ST", "O", "P", "</s>"),
    **tiny_gguf.chain("▁Hi", "<0xC3>", "<0xA9>", "<|im_end|>"),
}


@pytest.fixture(scope="module", autouse=True)
def _no_compile() -> None:
    import mlx.core as mx

    mx.disable_compile()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_mlx(tmp_path_factory.mktemp("mlx") / "tiny-mlx")


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> MlxBackend:
    root = tmp_path_factory.mktemp("mlx")
    path = write_tiny_mlx(root / "scripted", with_chat_template=True, transitions=TRANSITIONS)
    return MlxBackend.load(path, max_batch=8)


def requests(
    n: int, prompt: str = PROMPT, sampling: SamplingParams = SAMPLING, stop: Sequence[str] = ()
) -> list[GenerationRequest]:
    return [GenerationRequest(prompt, 1000 + i, sampling, tuple(stop)) for i in range(n)]


def decode(
    backend: MlxBackend,
    batch: Sequence[GenerationRequest],
    cancel: threading.Event | None = None,
    width: int | None = None,
) -> tuple[list[GenerationResult], list[BatchEvent]]:
    events = list(backend.generate_batch(batch, cancel, width))
    done = {e.index: e.result for e in events if isinstance(e, BatchDone)}
    assert sorted(done) == list(range(len(batch))), "every sequence ends exactly once"
    ended: set[int] = set()
    for event in events:
        assert event.index not in ended, "no event after a sequence's end"
        if isinstance(event, BatchDone):
            ended.add(event.index)
            streamed = "".join(
                e.text for e in events if isinstance(e, BatchText) and e.index == event.index
            )
            assert streamed == event.result.text
    return [done[i] for i in range(len(batch))], events


def texts(results: Sequence[GenerationResult]) -> list[str]:
    return [r.text for r in results]


def test_offered_but_one_sequence_by_default_on_a_cpu(folder: Path) -> None:
    plain = MlxBackend.load(folder)
    assert isinstance(plain, BatchedGeneration)
    assert plain.max_batch == 1  # measured: batching does not pay on a CPU
    assert MlxBackend.load(folder, max_batch=8).max_batch == 8
    with pytest.raises(ModelLoadError, match="max_batch"):
        MlxBackend.load(folder, max_batch=0)
    with pytest.raises(GenerationError, match="at most 1 sequences"):
        list(plain.generate_batch(requests(2)))


def test_reproducible_across_backends_and_after_other_work(folder: Path) -> None:
    first = MlxBackend.load(folder, max_batch=8)
    expected = texts(decode(first, requests(4))[0])
    assert len(set(expected)) == 4, "each sequence draws from its own seed"
    second = MlxBackend.load(folder, max_batch=8)
    second.generate(GenerationRequest("the bully", 5, SAMPLING))  # other work first
    list(second.generate_batch(requests(3, "User: hello\nAssistant:")))
    assert texts(decode(second, requests(4))[0]) == expected
    assert texts(decode(first, requests(4))[0]) == expected  # from the prompt cache


def test_a_narrower_width_decodes_consecutive_batches(folder: Path) -> None:
    """MLX decodes `width` requests at a time, each batch whole (no refill as sequences
    end): the same texts as those batches decoded on their own."""
    backend = MlxBackend.load(folder, max_batch=8)
    batch = requests(5)
    results, events = decode(backend, batch, width=2)
    starts = [e.index for e in events if isinstance(e, BatchStarted)]
    assert starts == [0, 1, 2, 3, 4]
    first_done = next(i for i, e in enumerate(events) if isinstance(e, BatchDone))
    assert [e.index for e in events[:first_done] if isinstance(e, BatchStarted)] == [0, 1]
    alone = [texts(decode(backend, batch[i : i + 2])[0]) for i in (0, 2, 4)]
    assert texts(results) == [text for part in alone for text in part]


def test_each_sequence_draws_what_generate_draws_with_its_seed(folder: Path) -> None:
    """On the tiny model the batch's rows compute exactly what one sequence computes, so
    the seeded draws match `generate` token for token (mx.random.seed's key sequence)."""
    backend = MlxBackend.load(folder, max_batch=8)
    batch = requests(4)
    batched = texts(decode(backend, batch)[0])
    alone = [backend.generate(request).text for request in batch]
    assert batched == alone


def test_the_shared_prompt_is_evaluated_once_and_stays_cached(folder: Path) -> None:
    backend = MlxBackend.load(folder, max_batch=8)
    results, _ = decode(backend, requests(3))
    n = results[0].prompt_tokens
    assert [r.prompt_tokens_evaluated for r in results] == [n, 1, 1]
    again, _ = decode(backend, requests(3))
    assert [r.prompt_tokens_evaluated for r in again] == [1, 1, 1]
    follow = backend.generate(requests(1)[0])
    assert follow.prompt_tokens_evaluated == 1


def test_different_prompts_stop_strings_and_ends_at_different_steps(
    scripted: MlxBackend,
) -> None:
    greedy = SamplingParams(temperature=0, max_tokens=12)
    batch = [
        GenerationRequest("User: Hello", 1, greedy, ("STOP",)),
        GenerationRequest("User: Hi", 2, greedy, ("STOP",)),
        GenerationRequest("User: Hello world", 3, greedy, ("STOP",)),
    ]
    results, events = decode(scripted, batch)
    assert results[0].text == " world "
    assert results[0].finish_reason == "stop"
    assert results[1].text == "é"  # two byte tokens, arriving whole
    assert [e.text for e in events if isinstance(e, BatchText) and e.index == 1] == ["é"]
    assert results[1].finish_reason == "stop"
    assert results[1].completion_tokens == 2
    for index, request in enumerate(batch):
        alone = scripted.generate(request)
        assert (alone.text, alone.finish_reason, alone.completion_tokens) == (
            results[index].text,
            results[index].finish_reason,
            results[index].completion_tokens,
        )
    assert not any("S" in e.text for e in events if isinstance(e, BatchText))


def test_max_tokens_gives_length(folder: Path) -> None:
    backend = MlxBackend.load(folder, max_batch=8)
    short = SamplingParams(temperature=0.9, max_tokens=5, repeat_penalty=1.0)
    results, _ = decode(backend, requests(4, "the bully", short))
    ends = {(r.finish_reason, r.completion_tokens) for r in results}
    assert ("length", 5) in ends  # the random model may also end one early (an end token)
    assert all(count < 5 for reason, count in ends if reason == "stop")


def test_cancel_stops_every_sequence_within_a_token(folder: Path) -> None:
    backend = MlxBackend.load(folder, max_batch=8)
    cancel = threading.Event()
    events: list[BatchEvent] = []
    long = SamplingParams(temperature=0.9, max_tokens=50)
    for event in backend.generate_batch(requests(4, "and", long), cancel):
        events.append(event)
        if isinstance(event, BatchText):
            cancel.set()
    done = [e.result for e in events if isinstance(e, BatchDone)]
    assert len(done) == 4
    assert {r.finish_reason for r in done} == {"cancelled"}
    assert sum(r.completion_tokens for r in done) <= 4
    # Nothing is left behind: the next batch is the same as on a fresh backend.
    fresh = MlxBackend.load(folder, max_batch=8)
    assert texts(decode(backend, requests(2))[0]) == texts(decode(fresh, requests(2))[0])


def test_cancel_before_start_evaluates_nothing(folder: Path) -> None:
    backend = MlxBackend.load(folder, max_batch=8)
    cancel = threading.Event()
    cancel.set()
    results, _ = decode(backend, requests(2), cancel)
    assert [(r.finish_reason, r.prompt_tokens_evaluated) for r in results] == [("cancelled", 0)] * 2


def test_closing_early_keeps_the_backend_consistent(folder: Path) -> None:
    backend = MlxBackend.load(folder, max_batch=8)
    events = backend.generate_batch(requests(3))
    next(events)
    events.close()
    fresh = MlxBackend.load(folder, max_batch=8)
    assert texts(decode(backend, requests(3))[0]) == texts(decode(fresh, requests(3))[0])


def test_requests_must_share_sampling_and_fit(folder: Path) -> None:
    backend = MlxBackend.load(folder, max_batch=2, n_ctx=32)
    mixed = [requests(1)[0], GenerationRequest(PROMPT, 1, SamplingParams(max_tokens=3))]
    with pytest.raises(GenerationError, match="share sampling"):
        list(backend.generate_batch(mixed))
    with pytest.raises(PromptTooLongError):
        list(backend.generate_batch(requests(2, "hello world " * 10)))


def test_shared_prefix_stops_short_of_each_last_token() -> None:
    assert shared_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix([[1, 2], [1, 2, 3]]) == 1
    assert shared_prefix([[7], [8]]) == 0
