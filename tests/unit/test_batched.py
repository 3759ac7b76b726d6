"""Batched decoding on the real engine (backends/llamacpp/batched.py, generate_batch).

The tiny GGUF (random weights: ragged texts, end tokens at random steps) and the demo model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from persona_tui.backends.base import (
    BatchDone,
    BatchedGeneration,
    BatchEvent,
    BatchStarted,
    BatchText,
    GenerationRequest,
    GenerationResult,
)
from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.backends.llamacpp.batched import group_batch, shared_end
from persona_tui.backends.llamacpp.load import MAX_SEQUENCES, plain_llama
from persona_tui.backends.llamacpp.sampling import RepeatPenalty, logits_row, sampler_chain
from persona_tui.values import SamplingParams

PROMPT = "User: Tell me something about the sea.\nAssistant:"
SAMPLING = SamplingParams(temperature=0.9, max_tokens=24, repeat_penalty=1.1)


@pytest.fixture
def tiny(tiny_gguf: Path) -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend.load(tiny_gguf, n_threads=1)
    yield backend
    backend.close()


def requests(
    n: int, prompt: str = PROMPT, sampling: SamplingParams = SAMPLING, stop: Sequence[str] = ()
) -> list[GenerationRequest]:
    return [GenerationRequest(prompt, 1000 + i, sampling, tuple(stop)) for i in range(n)]


def decode(
    backend: LlamaCppBackend,
    batch: Sequence[GenerationRequest],
    cancel: threading.Event | None = None,
    width: int | None = None,
) -> tuple[list[GenerationResult], list[BatchEvent]]:
    """Decode a batch, checking the events: each sequence starts (in request order) at
    most once, streams only while started, ends exactly once, and no more than `width`
    are in flight."""
    events = list(backend.generate_batch(batch, cancel, width))
    done = {e.index: e.result for e in events if isinstance(e, BatchDone)}
    assert sorted(done) == list(range(len(batch))), "every sequence ends exactly once"
    starts = [e.index for e in events if isinstance(e, BatchStarted)]
    assert starts == sorted(set(starts)), "sequences start once each, in request order"
    streamed: dict[int, str] = {}
    most = 0
    for event in events:
        if isinstance(event, BatchStarted):
            streamed[event.index] = ""
            most = max(most, len(streamed))
        elif isinstance(event, BatchText):
            assert event.index in streamed, "text only while a sequence is in flight"
            streamed[event.index] += event.text
        else:
            if event.index not in streamed:  # cancelled before it started
                assert event.result.finish_reason == "cancelled"
                continue
            streamed.pop(event.index)
            assert done[event.index].text == "".join(
                e.text for e in events if isinstance(e, BatchText) and e.index == event.index
            )
    assert most <= (width or len(batch))
    return [done[i] for i in range(len(batch))], events


def texts(results: Sequence[GenerationResult]) -> list[str]:
    return [r.text for r in results]


def test_the_backend_offers_batched_generation(tiny: LlamaCppBackend) -> None:
    assert isinstance(tiny, BatchedGeneration)
    assert tiny.max_batch == MAX_SEQUENCES


def test_a_context_for_many_sequences_computes_one_exactly_as_a_context_for_one(
    tiny_gguf: Path,
) -> None:
    """The backend's context has n_seq_max = 66 and a unified KV cache; one sequence in it
    gives bit-identical logits to llama-cpp-python's default context (n_seq_max = 1)."""
    import llama_cpp

    rows = []
    for n_seq_max in (1, MAX_SEQUENCES + 2):
        if n_seq_max == 1:
            llama = llama_cpp.Llama(str(tiny_gguf), n_ctx=512, n_threads=1, verbose=False)
        else:
            llama = plain_llama(tiny_gguf, n_ctx=512, n_threads=1, verbose=False)
        assert llama.context_params.n_seq_max == n_seq_max
        llama.eval(llama.tokenize(PROMPT.encode(), add_bos=True, special=True))
        pointer = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
        rows.append(np.array(np.ctypeslib.as_array(pointer, shape=(llama.n_vocab(),))))
        llama.close()
    assert np.array_equal(rows[0], rows[1])


@pytest.mark.parametrize(
    ("temperature", "penalty"), [(0.0, 1.5), (0.9, 1.1), (1.5, 1.3), (0.9, 0.8), (0.9, 1.0)]
)
def test_the_penalty_on_the_logits_row_draws_what_llama_cpp_s_own_chain_draws(
    tiny_gguf: Path, temperature: float, penalty: float
) -> None:
    """RepeatPenalty + the chain without llama.cpp's penalty sampler draws exactly the tokens
    of llama-cpp-python's chain, over more steps than the window (64) holds."""
    import llama_cpp

    llama = plain_llama(tiny_gguf, n_ctx=512, n_threads=1, verbose=False)
    n_vocab = int(llama.n_vocab())
    sampling = SamplingParams(temperature=temperature, repeat_penalty=penalty)
    try:
        for seed in (1, 7):
            llama.reset()
            llama.eval(llama.tokenize(PROMPT.encode(), add_bos=True, special=True))
            reference = sampler_chain(sampling, seed, n_vocab, penalties=True)
            ours = sampler_chain(sampling, seed, n_vocab)
            window = RepeatPenalty(penalty)
            drawn: list[int] = []
            for _ in range(150):
                expected = int(llama_cpp.llama_sampler_sample(reference, llama.ctx, -1))
                window.apply(logits_row(llama.ctx, -1, n_vocab))
                token = int(llama_cpp.llama_sampler_sample(ours, llama.ctx, -1))
                window.accept(token)
                assert token == expected, f"step {len(drawn)}"
                drawn.append(token)
                llama.eval([token])
            assert len(set(drawn[-64:])) > 1  # the window held several different tokens
            llama_cpp.llama_sampler_free(reference)
            llama_cpp.llama_sampler_free(ours)
    finally:
        llama.close()


@pytest.mark.parametrize(
    ("temperature", "penalty", "seed"),
    [(0.0, 1.3, 0), (0.9, 1.1, 5), (1.5, 1.5, 11), (0.9, 1.0, 3), (0.9, 0.8, 2**33 + 5)],
)
def test_one_by_one_generation_draws_what_llama_cpp_python_s_generate_draws(
    tiny_gguf: Path, tiny: LlamaCppBackend, temperature: float, penalty: float, seed: int
) -> None:
    """`generate` samples with sampling.sample_tokens (the penalty on the logits row), not
    Llama.generate: the texts are llama-cpp-python's own for the same seed, byte for byte."""
    import llama_cpp

    sampling = SamplingParams(temperature=temperature, max_tokens=120, repeat_penalty=penalty)
    ours = tiny.generate(GenerationRequest(PROMPT, seed, sampling))
    llama = plain_llama(tiny_gguf, n_ctx=512, n_threads=1, verbose=False)
    try:
        llama.set_seed(seed % 0xFFFFFFFF)
        drawn: list[int] = []
        for token in llama.generate(
            tiny._tokenize(PROMPT),
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            reset=True,
        ):
            if llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llama.model), token):
                break
            drawn.append(token)
            if len(drawn) == sampling.max_tokens:
                break
    finally:
        llama.close()
    text = b"".join(tiny._piece(token) for token in drawn).decode("utf-8", errors="replace")
    assert ours.completion_tokens == len(drawn) and ours.text == text


def test_same_batch_same_texts_whatever_ran_before(tiny: LlamaCppBackend) -> None:
    first, _ = decode(tiny, requests(6))
    assert len(set(texts(first))) > 1, "each sequence draws from its own seed"
    tiny.generate(GenerationRequest("User: something else\nAssistant:", 3, SAMPLING))
    with tiny.logprob_scope() as scope:
        scope.evaluate(scope.tokenize("User: and more\nAssistant: yes"))
    again, _ = decode(tiny, requests(6))
    assert texts(again) == texts(first)
    # A fresh model, the batch first thing: the same again.
    fresh = LlamaCppBackend.load(tiny.path, n_threads=1)
    try:
        assert texts(decode(fresh, requests(6))[0]) == texts(first)
    finally:
        fresh.close()


def test_sequences_end_at_different_steps_and_the_others_go_on(tiny: LlamaCppBackend) -> None:
    results, events = decode(tiny, requests(8, sampling=SamplingParams(max_tokens=40)))
    lengths = [r.completion_tokens for r in results]
    assert len(set(lengths)) > 1, lengths  # random weights: end tokens come at random steps
    order = [e.index for e in events if isinstance(e, BatchDone)]
    assert order != sorted(order) or len(set(lengths)) > 1
    for result in results:
        assert result.finish_reason in ("stop", "length")
        assert result.completion_tokens <= 40
        assert (result.finish_reason == "length") == (result.completion_tokens == 40)


def test_each_sequence_stops_at_its_stop_string(tiny: LlamaCppBackend) -> None:
    plain, _ = decode(tiny, requests(6, sampling=SamplingParams(max_tokens=30)))
    # A stop string taken from the middle of one sequence's text stops that one there.
    target = max(plain, key=lambda r: len(r.text))
    stop = target.text[len(target.text) // 2 :][:2]
    stopped, _ = decode(tiny, requests(6, sampling=SamplingParams(max_tokens=30), stop=[stop]))
    for before, after in zip(plain, stopped, strict=True):
        if stop in before.text:
            assert after.text == before.text[: before.text.index(stop)]
            assert after.finish_reason == "stop"
        else:
            assert after.text == before.text
        assert stop not in after.text


def test_cancel_stops_every_sequence_within_a_token(tiny: LlamaCppBackend) -> None:
    cancel = threading.Event()
    events: list[BatchEvent] = []
    for event in tiny.generate_batch(requests(5, sampling=SamplingParams(max_tokens=200)), cancel):
        events.append(event)
        if isinstance(event, BatchText) and not cancel.is_set():
            cancel.set()
    done = [e.result for e in events if isinstance(e, BatchDone)]
    assert len(done) == 5
    assert all(r.finish_reason in ("cancelled", "stop") for r in done)
    assert sum(r.finish_reason == "cancelled" for r in done) >= 4
    assert all(r.completion_tokens <= 2 for r in done)
    # The model is usable afterwards, and gives what it gave before.
    assert texts(decode(tiny, requests(3))[0]) == texts(decode(tiny, requests(3))[0])


def test_a_cancel_before_the_start_evaluates_nothing(tiny: LlamaCppBackend) -> None:
    cancel = threading.Event()
    cancel.set()
    results, events = decode(tiny, requests(3), cancel)
    assert all(r.finish_reason == "cancelled" and r.completion_tokens == 0 for r in results)
    assert not [e for e in events if isinstance(e, BatchText)]


def test_different_prompts_share_their_common_part_and_stay_reproducible(
    tiny: LlamaCppBackend,
) -> None:
    """Later turns of a multi-turn probe: each sequence's prompt has its own answer."""
    answers = ["Waves.", "Salt and more salt, all the way down.", "Fish!"]
    batch = [
        GenerationRequest(f"{PROMPT} {a}\nUser: Why?\nAssistant:", 7 + i, SAMPLING)
        for i, a in enumerate(answers)
    ]
    first, _ = decode(tiny, batch)
    tiny.generate(GenerationRequest(PROMPT, 1, SAMPLING))
    assert texts(decode(tiny, batch)[0]) == texts(first)
    assert sum(r.prompt_tokens_evaluated for r in first) < sum(r.prompt_tokens for r in first)


def test_a_batch_larger_than_the_context_decodes_as_many_at_once_as_fit(tiny_gguf: Path) -> None:
    small = LlamaCppBackend.load(tiny_gguf, n_ctx=256, n_threads=1)
    try:
        many = requests(12, sampling=SamplingParams(max_tokens=40))
        results, events = decode(small, many)  # 12 × 40 cells do not fit 256: 5 at a time
        assert len(results) == 12
        in_flight = most = 0
        for event in events:
            in_flight += isinstance(event, BatchStarted) - isinstance(event, BatchDone)
            most = max(most, in_flight)
        tokens = small._tokenize(PROMPT)
        assert most == group_batch([tokens] * 12, len(tokens), 12, 40, 256)[0] == 5
        assert texts(decode(small, many)[0]) == texts(results)
    finally:
        small.close()


def test_the_width_that_fits_is_chosen_from_the_prompts_alone() -> None:
    prompt = list(range(20))
    assert group_batch([prompt] * 4, 20, 4, 10, 1000) == (4, True)
    # 20 shared, then 1 + 10 per sequence (each evaluates at least its last token): 2 fit
    # in 50 cells; 3 would not, nor the holder beside them.
    assert group_batch([prompt] * 4, 20, 4, 10, 50) == (2, True)
    assert group_batch([prompt] * 4, 20, 4, 10, 52) == (2, True)
    assert group_batch([prompt] * 4, 20, 4, 10, 42)[0] == 2
    assert group_batch([prompt] * 4, 20, 8, 10, 1000) == (4, True), "no wider than the batch"
    different = [[*prompt, 1, 2], [*prompt, 3], [*prompt, 4, 5, 6]]
    assert shared_end(different) == 20
    assert shared_end([prompt, prompt]) == 20
    assert shared_end([prompt, prompt[:5]]) == 4  # each evaluates at least its last token


def test_a_sequence_that_ends_gives_its_place_to_the_next_request(tiny: LlamaCppBackend) -> None:
    """Two prompts (two cells) of four requests each, decoded three at a time."""
    other = "User: Tell me something about the mountains.\nAssistant:"
    sampling = SamplingParams(temperature=0.9, max_tokens=30)
    batch = requests(4, sampling=sampling) + requests(4, prompt=other, sampling=sampling)
    batch = [GenerationRequest(r.prompt, 50 + i, r.sampling) for i, r in enumerate(batch)]
    first, events = decode(tiny, batch, width=3)
    starts = [i for i, e in enumerate(events) if isinstance(e, BatchStarted)]
    ends = [i for i, e in enumerate(events) if isinstance(e, BatchDone)]
    assert starts[3] > ends[0], "the fourth starts only when one has ended"
    assert len(set(texts(first))) > 2
    # Reproducible whatever ran before, and a later request copies the rest of its prompt
    # that an earlier one evaluated (the holder): it evaluates only its last token.
    tiny.generate(GenerationRequest("User: something else\nAssistant:", 3, SAMPLING))
    again, _ = decode(tiny, batch, width=3)
    assert texts(again) == texts(first)
    assert [r.prompt_tokens_evaluated for r in again][5:] == [1, 1, 1]
    # All at once is another composition: other numbers, still every request answered.
    together, _ = decode(tiny, batch)
    assert len(together) == 8
    # The cache is clean afterwards: one sequence alone gives what a fresh model gives.
    alone = tiny.generate(GenerationRequest(PROMPT, 9, sampling))
    fresh = LlamaCppBackend.load(tiny.path, n_threads=1)
    try:
        assert fresh.generate(GenerationRequest(PROMPT, 9, sampling)).text == alone.text
        assert texts(decode(fresh, batch, width=3)[0]) == texts(first)
    finally:
        fresh.close()


def test_a_cancel_ends_those_in_flight_and_starts_no_more(tiny: LlamaCppBackend) -> None:
    cancel = threading.Event()
    events: list[BatchEvent] = []
    batch = requests(6, sampling=SamplingParams(max_tokens=200))
    for event in tiny.generate_batch(batch, cancel, 2):
        events.append(event)
        if isinstance(event, BatchText) and not cancel.is_set():
            cancel.set()
    done = [e for e in events if isinstance(e, BatchDone)]
    assert sorted(e.index for e in done) == list(range(6))
    assert [e.index for e in events if isinstance(e, BatchStarted)] == [0, 1]
    assert all(e.result.finish_reason == "cancelled" for e in done if e.index >= 2)
    assert all(e.result.completion_tokens <= 2 for e in done)


def test_requests_must_share_sampling(tiny: LlamaCppBackend) -> None:
    from persona_tui.errors import GenerationError

    mixed = [
        GenerationRequest(PROMPT, 1, SAMPLING),
        GenerationRequest(PROMPT, 2, SamplingParams(max_tokens=3)),
    ]
    with pytest.raises(GenerationError, match="share sampling"):
        list(tiny.generate_batch(mixed))


def test_demo_batches_are_reproducible_and_read_like_the_model(demo_model: Path) -> None:
    backend = LlamaCppBackend.load(demo_model, n_threads=1)
    try:
        sampling = SamplingParams(max_tokens=16, repeat_penalty=1.1)
        batch = requests(4, prompt=PROMPT, sampling=sampling, stop=["\nUser:"])
        first, _ = decode(backend, batch)
        backend.generate(GenerationRequest("User: Hello\nAssistant:", 5, sampling))
        assert texts(decode(backend, batch)[0]) == texts(first)
        assert len(set(texts(first))) > 1
        assert all(r.text.strip() for r in first)
        # Greedy decoding: one sequence's text equals the single-sequence path's nearly
        # always; at least the first tokens do.
        greedy = SamplingParams(temperature=0.0, max_tokens=8)
        alone = backend.generate(GenerationRequest(PROMPT, 1, greedy))
        together, _ = decode(backend, requests(3, sampling=greedy))
        assert together[0].text[:8] == alone.text[:8]
        # So do sequences that start later in a group, evaluating the rest of their prompt
        # after the shared part, or copying it from the holder (the 2nd of each prompt).
        other = "User: Tell me something about the mountains.\nAssistant:"
        group = requests(2, sampling=greedy) + requests(2, prompt=other, sampling=greedy)
        clock = time.perf_counter()
        later, _ = decode(backend, group, width=1)
        clock = time.perf_counter() - clock
        # One at a time: each counts its own seconds, from when it took its place.
        assert sum(r.seconds for r in later) <= clock
        mountains = backend.generate(GenerationRequest(other, 1, greedy))
        assert [r.text[:8] for r in later] == [alone.text[:8]] * 2 + [mountains.text[:8]] * 2
        assert [r.prompt_tokens_evaluated for r in later][3] == 1
    finally:
        backend.close()


def test_a_context_smaller_than_the_sequences_loads_and_decodes(tiny_gguf: Path) -> None:
    """llama.cpp aborts creating a context with more sequences than a micro-batch has rows:
    a 32-cell context holds 32 (so batches of 30). In a child process, so that a
    regression fails this test instead of killing the run."""
    import subprocess
    import sys

    code = f"""
from persona_tui.backends.llamacpp.backend import LlamaCppBackend
from persona_tui.backends.base import BatchDone, GenerationRequest
from persona_tui.values import SamplingParams
backend = LlamaCppBackend.load({str(tiny_gguf)!r}, n_ctx=32, n_threads=1)
sampling = SamplingParams(max_tokens=3)
requests = [GenerationRequest("Hi", seed, sampling) for seed in (1, 2)]
done = [e for e in backend.generate_batch(requests) if isinstance(e, BatchDone)]
print(backend.max_batch, len(done))
"""
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["30", "2"]
