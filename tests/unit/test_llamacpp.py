"""The llama.cpp backend against the real engine, on tiny GGUFs written by the suite."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from persona_tui.backends.base import ChatMessage, GenerationRequest, GenerationResult
from persona_tui.backends.cpu import default_n_threads
from persona_tui.backends.llamacpp.backend import EVAL_BLOCK, LlamaCppBackend
from persona_tui.errors import GenerationError, ModelLoadError, PromptTooLongError
from persona_tui.values import SamplingParams
from tests.tiny_gguf import CHAT_TEMPLATE, chain, write_tiny_gguf

# Scripted continuations (see tests/tiny_gguf.py): after the prompt's last token the
# model follows these chains at any temperature.
UTF8_CHAIN = chain(
    "▁Hello",
    *(f"<0x{b:02X}>" for b in "é世🙂".encode()),  # characters split into byte tokens
    "<0xFF>",  # an invalid byte
    "▁the",
    "<0x1B>",  # ESC: a terminal control sequence follows
    "[",
    "3",
    "1",
    "m",
    "</s>",
)
STOP_CHAIN = chain("▁you", "▁ST", "O", "P", "▁and", "▁what", "<|im_end|>")
LOOP_CHAIN = chain("▁world", "▁are", "▁world")


def request(
    prompt: str, seed: int = 1, stop: tuple[str, ...] = (), **sampling: float
) -> GenerationRequest:
    params = {"max_tokens": 24, **sampling}
    return GenerationRequest(prompt=prompt, seed=seed, sampling=SamplingParams(**params), stop=stop)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scripted_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transitions = {**UTF8_CHAIN, **STOP_CHAIN, **LOOP_CHAIN}
    return write_tiny_gguf(tmp_path_factory.mktemp("m") / "scripted.gguf", transitions=transitions)


@pytest.fixture
def tiny(tiny_gguf: Path) -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend.load(tiny_gguf, n_threads=1)
    yield backend
    backend.close()


@pytest.fixture
def scripted(scripted_gguf: Path) -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend.load(scripted_gguf, n_threads=1)
    yield backend
    backend.close()


# ------------------------------------------------------------------ loading and info


def test_model_info_describes_the_file(tiny: LlamaCppBackend, tiny_gguf: Path) -> None:
    import llama_cpp

    info = tiny.info
    assert info.backend == "llama.cpp"
    assert info.backend_version == llama_cpp.__version__
    assert info.path == str(tiny_gguf.absolute())
    assert info.name == "tiny-test-llama"
    assert info.sha256 == hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert info.size_bytes == tiny_gguf.stat().st_size
    assert info.architecture == "llama"
    assert info.quantization == "F32"
    assert info.context_length == tiny.n_ctx == 4096
    assert info.chat_template_sha256 is None
    assert info.extra["n_ctx_train"] == "4096"
    assert info.extra["n_threads"] == "1"
    assert int(info.extra["n_vocab"]) > 256
    assert info.extra["eval_block"] == str(EVAL_BLOCK)  # results depend on the batch plan


def test_context_defaults_to_trained_context_capped_at_4096(tmp_path: Path) -> None:
    short = write_tiny_gguf(tmp_path / "short.gguf", context_length=512)
    long = write_tiny_gguf(tmp_path / "long.gguf", context_length=16384)
    for path, trained, expected in ((short, 512, 512), (long, 16384, 4096)):
        backend = LlamaCppBackend.load(path, n_threads=1)
        assert backend.n_ctx == expected
        assert backend.info.extra["n_ctx_train"] == str(trained)
        backend.close()
    explicit = LlamaCppBackend.load(long, n_ctx=256, n_threads=1)
    assert explicit.n_ctx == explicit.info.context_length == 256
    explicit.close()


def test_default_threads_are_physical_cores_available() -> None:
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert logical is not None
    threads = default_n_threads()
    assert 1 <= threads <= logical
    siblings = (
        {
            Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text()
            for cpu in os.sched_getaffinity(0)
        }
        if Path("/sys/devices/system/cpu/cpu0/topology").is_dir()
        else None
    )
    if siblings is not None:
        assert threads == len(siblings)


# ---------------------------------------------------------------------- chat templates


def test_no_chat_template_means_no_chat(tiny: LlamaCppBackend) -> None:
    assert tiny.has_chat_template is False
    assert tiny.chat_template is None
    with pytest.raises(ModelLoadError, match=r"no chat template.*transcript"):
        tiny.render_chat([ChatMessage("user", "Hi")])


def test_render_chat_uses_the_gguf_template(tiny_chat_gguf: Path) -> None:
    backend = LlamaCppBackend.load(tiny_chat_gguf, n_threads=1)
    assert backend.has_chat_template
    assert backend.chat_template == CHAT_TEMPLATE
    expected_hash = hashlib.sha256(CHAT_TEMPLATE.encode()).hexdigest()
    assert backend.info.chat_template_sha256 == expected_hash
    prompt = backend.render_chat([ChatMessage("system", "Be kind."), ChatMessage("user", "Hi")])
    assert prompt == (
        "<s><|im_start|>system\nBe kind.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    # Special tokens written as text are parsed, and the template's "<s>" is not doubled.
    assert backend.count_tokens("<|im_start|>") == 2  # BOS + the control token
    assert backend.count_tokens(prompt) == backend.count_tokens(prompt.removeprefix("<s>"))
    result = backend.generate(request(prompt, max_tokens=4))
    assert result.prompt_tokens == backend.count_tokens(prompt)
    backend.close()


# --------------------------------------------------------------------------- sampling


def test_same_seed_same_text_whatever_ran_before(tiny: LlamaCppBackend, tiny_gguf: Path) -> None:
    prompt = "User: Hello, what are you?\nAssistant:"
    first = tiny.generate(request(prompt, seed=42, temperature=1.0))
    again = tiny.generate(request(prompt, seed=42, temperature=1.0))
    tiny.generate(request("User: Hello world\nAssistant:", seed=3, temperature=1.0))
    after_other = tiny.generate(request(prompt, seed=42, temperature=1.0))
    fresh = LlamaCppBackend.load(tiny_gguf, n_threads=1)
    from_scratch = fresh.generate(request(prompt, seed=42, temperature=1.0))
    fresh.close()
    assert first.completion_tokens > 0
    assert first.text == again.text == after_other.text == from_scratch.text


def test_seed_and_temperature_change_the_sample(tiny: LlamaCppBackend) -> None:
    prompt = "User: Hi\nAssistant:"
    hot = {tiny.generate(request(prompt, seed=seed, temperature=1.5)).text for seed in range(4)}
    assert len(hot) > 1
    greedy = {tiny.generate(request(prompt, seed=seed, temperature=0.0)).text for seed in range(3)}
    assert len(greedy) == 1


def test_max_tokens_ends_with_length(scripted: LlamaCppBackend) -> None:
    result = scripted.generate(request("world", max_tokens=5))
    assert result.finish_reason == "length"
    assert result.completion_tokens == 5
    assert result.text == " are world are world are"


# -------------------------------------------------------------------------- streaming


def test_utf8_split_across_tokens_is_emitted_whole(scripted: LlamaCppBackend) -> None:
    pieces: list[str] = []
    result = scripted.generate(request("Hello", temperature=1.0), on_text=pieces.append)
    assert result.text == "é世🙂\ufffd the\x1b[31m"
    assert result.finish_reason == "stop"  # the end-of-sequence token
    assert "".join(pieces) == result.text
    # Each character arrives whole: no replacement character before the invalid byte.
    assert pieces[:3] == ["é", "世", "🙂"]


def test_stop_string_split_across_tokens_never_leaks(scripted: LlamaCppBackend) -> None:
    pieces: list[str] = []
    result = scripted.generate(request("you", stop=("STOP",)), on_text=pieces.append)
    assert result.text == " "
    assert result.finish_reason == "stop"
    assert "".join(pieces) == " "
    assert result.completion_tokens == 3  # ▁ST O P: the stop string ends in the 3rd token


def test_held_back_text_is_released_when_no_stop_follows(scripted: LlamaCppBackend) -> None:
    pieces: list[str] = []
    result = scripted.generate(request("you", stop=("STAR", "\n")), on_text=pieces.append)
    assert result.text == " STOP and what"
    assert result.finish_reason == "stop"  # <|im_end|> ends the turn
    assert "".join(pieces) == result.text


def test_cancel_stops_within_a_token(scripted: LlamaCppBackend) -> None:
    cancel = threading.Event()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()

    result = scripted.generate(request("world", max_tokens=50), on_text=on_text, cancel=cancel)
    assert result.finish_reason == "cancelled"
    assert result.completion_tokens == 3
    assert result.text == "".join(pieces) == " are world are"
    # Already cancelled: nothing is evaluated.
    early = scripted.generate(request("world"), cancel=cancel)
    assert (early.finish_reason, early.text, early.prompt_tokens_evaluated) == ("cancelled", "", 0)


# ------------------------------------------------------------------------ prompt cache


def test_prompt_tokens_evaluated_matches_llama_cpp_counters(tiny: LlamaCppBackend) -> None:
    import llama_cpp

    shared = "User: " + "hello world " * 200
    prompts = [
        shared + "what?\nAssistant:",
        shared + "and you?\nAssistant:",
        "User: Hi\nAssistant:",
    ]
    context = tiny._llama.ctx
    results = []
    for prompt in prompts[:1] + prompts:
        llama_cpp.llama_perf_context_reset(context)
        result = tiny.generate(request(prompt, max_tokens=3, temperature=0.0))
        perf = llama_cpp.llama_perf_context(context)
        # The last sampled token is never evaluated.
        assert (
            perf.n_p_eval + perf.n_eval
            == result.prompt_tokens_evaluated + result.completion_tokens - 1
        )
        results.append(result)
    first, repeat, second, unrelated = results
    assert first.prompt_tokens_evaluated == first.prompt_tokens
    # The same prompt again: everything but the last (partial) block comes from the cache.
    assert repeat.prompt_tokens_evaluated == (first.prompt_tokens - 1) % EVAL_BLOCK + 1
    # The shared prefix (~400 tokens) is reused in whole blocks.
    reused = second.prompt_tokens - second.prompt_tokens_evaluated
    assert reused >= 2 * EVAL_BLOCK and reused % EVAL_BLOCK == 0
    assert unrelated.prompt_tokens_evaluated == unrelated.prompt_tokens


def test_prompt_longer_than_context_is_a_clear_error(tiny_gguf: Path) -> None:
    backend = LlamaCppBackend.load(tiny_gguf, n_ctx=64, n_threads=1)
    prompt = "hello world " * 20
    n_prompt = backend.count_tokens(prompt)
    assert n_prompt + 24 > 64
    with pytest.raises(PromptTooLongError) as error:
        backend.generate(request(prompt, max_tokens=24))
    message = str(error.value)
    assert f"{n_prompt} tokens" in message and "64" in message and "max_tokens" in message
    # Still usable afterwards.
    assert backend.generate(request("Hi", max_tokens=4)).completion_tokens >= 0
    backend.close()


# ---------------------------------------------------------------------- thread safety


def test_concurrent_use_is_serialised(tiny: LlamaCppBackend) -> None:
    prompts = ["User: Hi\nAssistant:", "User: Hello world\nAssistant:"]
    expected = [tiny.generate(request(p, seed=5, temperature=1.0)).text for p in prompts]
    results: dict[int, list[str]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for _ in range(4):
                results[index].append(
                    tiny.generate(request(prompts[index], seed=5, temperature=1.0)).text
                )
                tiny.count_tokens(prompts[1 - index])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == {0: [expected[0]] * 4, 1: [expected[1]] * 4}


def test_closed_backend_raises(tiny_gguf: Path) -> None:
    backend = LlamaCppBackend.load(tiny_gguf, n_threads=1)
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(GenerationError, match="closed"):
        backend.generate(request("Hi"))


# ----------------------------------------------------------------------- broken files


def broken_files(tiny_gguf: Path, folder: Path) -> dict[str, Path]:
    data = tiny_gguf.read_bytes()
    files = {
        "empty": b"",
        "random": bytes(range(256)) * 64,
        "text": b"this is not a model\n" * 10,
        "magic only": b"GGUF",
        "bad version": b"GGUF" + (99).to_bytes(4, "little") + data[8:],
        "cut in header": data[:200],
        "cut in metadata": data[:2000],
        "cut in tensors": data[: len(data) // 2],
        "one byte short": data[:-1],
    }
    paths = {}
    for name, content in files.items():
        path = folder / (name.replace(" ", "-") + ".gguf")
        path.write_bytes(content)
        paths[name] = path
    paths["missing"] = folder / "missing.gguf"
    paths["directory"] = folder
    return paths


def test_broken_files_raise_model_load_error(tiny_gguf: Path, tmp_path: Path) -> None:
    for name, path in broken_files(tiny_gguf, tmp_path).items():
        with pytest.raises(ModelLoadError) as error:
            LlamaCppBackend.load(path, n_threads=1)
        assert str(path) in str(error.value), name


def write_alien_gguf(path: Path) -> Path:
    """A well-formed GGUF whose architecture llama.cpp does not know: it gets past the
    header check, so llama.cpp itself rejects it (and would log about it)."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "no-such-architecture")
    writer.add_tensor("weight", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_file_llama_cpp_rejects_is_a_model_load_error(tmp_path: Path) -> None:
    path = write_alien_gguf(tmp_path / "alien.gguf")
    with pytest.raises(ModelLoadError, match=r"llama\.cpp could not load") as error:
        LlamaCppBackend.load(path, n_threads=1)
    assert str(path) in str(error.value)


def test_llama_cpp_never_writes_to_the_terminal(tiny_gguf: Path, tmp_path: Path) -> None:
    bad = broken_files(tiny_gguf, tmp_path)
    bad["alien"] = write_alien_gguf(tmp_path / "alien.gguf")
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from persona_tui.backends.base import GenerationRequest
        from persona_tui.backends.llamacpp.backend import LlamaCppBackend
        from persona_tui.errors import ModelLoadError
        from persona_tui.values import SamplingParams

        backend = LlamaCppBackend.load(Path({str(tiny_gguf)!r}), n_threads=1)
        backend.generate(GenerationRequest("User: Hi", 1, SamplingParams(max_tokens=8)))
        backend.close()
        for path in {[str(p) for p in bad.values()]!r}:
            try:
                LlamaCppBackend.load(Path(path), n_threads=1)
            except ModelLoadError:
                pass
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""


# ------------------------------------------------------------------------- demo model


@pytest.mark.demo
def test_demo_model_loads_and_generates(demo_model: Path) -> None:
    backend = LlamaCppBackend.load(demo_model, n_threads=1)
    info = backend.info
    assert info.architecture == "gemma3"
    assert info.quantization == "Q4_K_M"
    assert info.name and info.size_bytes == demo_model.stat().st_size
    assert int(info.extra["n_ctx_train"]) >= info.context_length == 4096
    # This GGUF ships without a chat template: the runner must use transcript mode.
    assert backend.has_chat_template is False
    prompt = "User: Hi\nAssistant:"
    pieces: list[str] = []
    result = backend.generate(
        request(prompt, seed=7, stop=("\nUser:",), max_tokens=12), on_text=pieces.append
    )
    assert result.completion_tokens > 0
    assert "\nUser:" not in result.text
    assert "".join(pieces) == result.text
    backend.close()


@pytest.mark.demo
def test_demo_model_is_deterministic_across_cache_states(demo_model: Path) -> None:
    """Quantized CPU kernels round differently by batch shape (here, without the aligned
    evaluation, 3 of these 8 seeds gave different text after another prompt ran)."""
    backend = LlamaCppBackend.load(demo_model, n_threads=1)

    def sample(prompt: str, seed: int) -> str:
        return backend.generate(request(prompt, seed=seed, max_tokens=8, temperature=1.0)).text

    short, other = "User: Hi\nAssistant:", "User: What is your favourite colour?\nAssistant:"
    for seed in range(1, 9):
        from_scratch = sample(short, seed)
        sample(other, seed)  # shares "<bos>User:" with `short`
        assert sample(short, seed) == from_scratch, seed
    # A long shared context is reused from the cache and still gives the same text.
    context = "In a school play rehearsal, the Assistant plays a bully. " * 12
    first = context + "User: What do you wish for?\nAssistant:"
    from_scratch = sample(first, 11)
    sample(context + "User: How should we treat a newcomer?\nAssistant:", 11)
    reused = backend.generate(request(first, seed=11, max_tokens=8, temperature=1.0))
    assert reused.prompt_tokens_evaluated < reused.prompt_tokens
    assert reused.text == from_scratch
    backend.close()


@pytest.mark.demo
def test_demo_framing_hint_reuses_the_whole_framing_and_stays_exact(demo_model: Path) -> None:
    """With the framing's end named, a trial re-evaluates only its own question, and its
    text is what a fresh evaluation of the same prompt gives."""
    backend = LlamaCppBackend.load(demo_model, n_threads=1)
    framing = "In a school play rehearsal, the Assistant plays a bully. " * 12 + "\n\nUser: "
    questions = ["What do you wish for?", "How should we treat a newcomer?", "Hello?"]

    def run(question: str, seed: int) -> GenerationResult:
        prompt = framing + question + "\nAssistant:"
        params = SamplingParams(max_tokens=8, temperature=1.0)
        return backend.generate(GenerationRequest(prompt, seed, params, (), len(framing)))

    fresh = {}
    for question in questions:
        backend.reset_cache()
        fresh[question] = run(question, 5)
        assert fresh[question].prompt_tokens_evaluated == fresh[question].prompt_tokens
    for question in [*questions, *reversed(questions)]:
        result = run(question, 5)
        assert result.text == fresh[question].text, question
        assert result.prompt_tokens_evaluated <= 12, "only the question is evaluated again"
    backend.close()
