"""The MLX backend against mlx-lm for real, on a tiny random llama folder built by the suite.

The folder is the tiny GGUF converted (tests/mlx_fixture.py), so the GGUF's scripted
transitions ("after A the model emits B") work here too, and the same weights run
through llama.cpp for the parity test.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

pytest.importorskip("mlx_lm", reason="the MLX backend needs: pip install 'persona-tui[mlx]'")

from persona_tui.backends.base import ChatMessage, GenerationRequest
from persona_tui.backends.detect import check_mlx_folder
from persona_tui.backends.mlx.backend import MlxBackend
from persona_tui.errors import GenerationError, ModelLoadError, PromptTooLongError
from persona_tui.values import SamplingParams
from tests import tiny_gguf
from tests.mlx_fixture import gguf_to_mlx, write_tiny_mlx

TRANSITIONS = {
    # "Hello" → " world" → " STOP" spelled over three tokens → end of text.
    **tiny_gguf.chain("▁Hello", "▁world", "▁ST", "O", "P", "</s>"),
    # "Hi" → "é" as two byte tokens → end of turn.
    **tiny_gguf.chain("▁Hi", "<0xC3>", "<0xA9>", "<|im_end|>"),
}


@pytest.fixture(scope="module", autouse=True)
def _no_compile() -> None:
    import mlx.core as mx

    mx.disable_compile()  # MLX's JIT takes seconds per new shape on CPU; tests stay fast


@pytest.fixture(scope="module")
def mlx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as an MLX folder: gibberish, no chat template."""
    return write_tiny_mlx(tmp_path_factory.mktemp("mlx") / "tiny-mlx")


@pytest.fixture(scope="module")
def backend(mlx_folder: Path) -> MlxBackend:
    return MlxBackend.load(mlx_folder)


@pytest.fixture(scope="module")
def scripted_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a chat template and the scripted TRANSITIONS."""
    root = tmp_path_factory.mktemp("mlx")
    return write_tiny_mlx(root / "scripted", with_chat_template=True, transitions=TRANSITIONS)


@pytest.fixture(scope="module")
def scripted(scripted_folder: Path) -> MlxBackend:
    return MlxBackend.load(scripted_folder)


def request(
    prompt: str, seed: int = 1, stop: tuple[str, ...] = (), **sampling: float
) -> GenerationRequest:
    params = SamplingParams(**{"max_tokens": 24, **sampling})  # type: ignore[arg-type]
    return GenerationRequest(prompt, seed, params, stop)


# ------------------------------------------------------------------------ loading


def test_info_records_the_weights_and_config(scripted: MlxBackend, scripted_folder: Path) -> None:
    info = scripted.info
    weights = scripted_folder / "model.safetensors"
    assert info.backend == "mlx"
    assert info.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info.size_bytes == weights.stat().st_size
    assert info.architecture == "llama"
    assert info.quantization == "float32"
    assert info.context_length == tiny_gguf.CONTEXT_LENGTH
    template = scripted.chat_template
    assert template is not None
    assert info.chat_template_sha256 == hashlib.sha256(template.encode()).hexdigest()
    assert info.backend_version and info.extra["mlx_version"]
    assert info.extra["detokenizer"] == "token bytes"


def test_missing_folder_is_an_error_not_a_download(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"does not exist.*never downloads"):
        MlxBackend.load("mlx-community/Not-A-Local-Folder-4bit")
    with pytest.raises(ModelLoadError, match="does not exist"):
        MlxBackend.load(tmp_path / "nothing-here")


def test_incomplete_folder_names_what_is_missing(tmp_path: Path, mlx_folder: Path) -> None:
    (tmp_path / "config.json").write_text((mlx_folder / "config.json").read_text())
    with pytest.raises(ModelLoadError, match=r"missing model\*\.safetensors weights, tokenizer"):
        check_mlx_folder(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="a file, but the MLX backend needs a model folder"):
        MlxBackend.load(weights)


def test_corrupt_weights_are_a_load_error(tmp_path: Path, mlx_folder: Path) -> None:
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((mlx_folder / name).read_bytes())
    (tmp_path / "model.safetensors").write_bytes(
        (mlx_folder / "model.safetensors").read_bytes()[:500]
    )
    with pytest.raises(ModelLoadError, match="mlx-lm cannot load"):
        MlxBackend.load(tmp_path)


# --------------------------------------------------------------------- generation


def test_streams_the_scripted_continuation_and_ends_at_eos(scripted: MlxBackend) -> None:
    chunks: list[str] = []
    result = scripted.generate(request("User: Hello", temperature=1.0), chunks.append)
    assert result.text == " world STOP"
    assert "".join(chunks) == result.text
    assert result.finish_reason == "stop"
    assert result.completion_tokens == 4  # " world", " ST", "O", "P"; EOS is not counted
    assert result.prompt_tokens == scripted.count_tokens("User: Hello")


def test_stop_string_split_across_tokens_never_leaks(scripted: MlxBackend) -> None:
    chunks: list[str] = []
    result = scripted.generate(request("User: Hello", stop=("STOP",)), chunks.append)
    assert result.text == " world "
    assert result.finish_reason == "stop"
    assert "".join(chunks) == " world "
    assert not any("S" in chunk for chunk in chunks)


def test_character_split_across_byte_tokens_arrives_whole(scripted: MlxBackend) -> None:
    chunks: list[str] = []
    result = scripted.generate(request("User: Hi"), chunks.append)
    assert result.text == "é"
    assert chunks == ["é"]
    assert result.finish_reason == "stop"  # <|im_end|> ends the turn, as in llama.cpp


def test_max_tokens_gives_length(backend: MlxBackend) -> None:
    result = backend.generate(request("the bully", max_tokens=7))
    assert result.finish_reason == "length"
    assert result.completion_tokens == 7


def test_same_seed_same_text_other_seed_other_text(mlx_folder: Path) -> None:
    first = MlxBackend.load(mlx_folder)
    second = MlxBackend.load(mlx_folder)
    texts = [b.generate(request("you are", seed=7, temperature=1.0)).text for b in (first, second)]
    again = first.generate(request("you are", seed=7, temperature=1.0)).text  # from the cache
    other = first.generate(request("you are", seed=8, temperature=1.0)).text
    assert texts[0] == texts[1] == again
    assert other != texts[0]


def test_prefix_cache_evaluates_only_the_new_suffix(mlx_folder: Path) -> None:
    cached = MlxBackend.load(mlx_folder)
    shared = "User: what are you and the world\nAssistant: the bully\nUser:"
    first = cached.generate(request(shared + " hello", temperature=0))
    second = cached.generate(request(shared + " what", temperature=0))
    assert first.prompt_tokens_evaluated == first.prompt_tokens
    common = cached.count_tokens(shared)
    assert second.prompt_tokens_evaluated == second.prompt_tokens - common
    fresh = MlxBackend.load(mlx_folder).generate(request(shared + " what", temperature=0))
    assert fresh.prompt_tokens_evaluated == fresh.prompt_tokens
    assert second.text == fresh.text


def test_repeat_penalty_changes_greedy_output(backend: MlxBackend) -> None:
    plain = backend.generate(request("the the the", temperature=0, repeat_penalty=1.0))
    penalised = backend.generate(request("the the the", temperature=0, repeat_penalty=1.8))
    assert plain.text != penalised.text


def test_cancel_stops_within_a_token(backend: MlxBackend) -> None:
    cancel = threading.Event()
    chunks: list[str] = []

    def on_text(piece: str) -> None:
        chunks.append(piece)
        cancel.set()

    result = backend.generate(request("and", max_tokens=50), on_text, cancel)
    assert result.finish_reason == "cancelled"
    assert result.completion_tokens == 1
    assert len(chunks) == 1


def test_cancel_before_start_evaluates_nothing(backend: MlxBackend) -> None:
    cancel = threading.Event()
    cancel.set()
    result = backend.generate(request("and"), None, cancel)
    assert (result.finish_reason, result.text, result.prompt_tokens_evaluated) == (
        "cancelled",
        "",
        0,
    )


class _SetAfterFirstCheck(threading.Event):
    """A cancel event that turns set once it has been looked at (so mid-prompt, here)."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks > 1


def test_cancel_during_prompt_evaluation_drops_the_half_built_cache(mlx_folder: Path) -> None:
    fresh = MlxBackend.load(mlx_folder)
    prompt = "User: what are you\nAssistant:"
    assert fresh.generate(request(prompt, max_tokens=2)).prompt_tokens_evaluated > 0
    result = fresh.generate(request(prompt + " and", max_tokens=50), None, _SetAfterFirstCheck())
    assert (result.finish_reason, result.completion_tokens) == ("cancelled", 0)
    again = fresh.generate(request(prompt + " and", max_tokens=2))
    assert again.prompt_tokens_evaluated == again.prompt_tokens


def test_prompt_too_long(mlx_folder: Path) -> None:
    small = MlxBackend.load(mlx_folder, n_ctx=32)
    with pytest.raises(PromptTooLongError, match=r"\+ max_tokens 24 .* context of 32 tokens"):
        small.generate(request("hello world " * 10))
    assert small.generate(request("hello", max_tokens=4)).completion_tokens <= 4


def test_render_chat_uses_the_template_without_double_bos(scripted: MlxBackend) -> None:
    prompt = scripted.render_chat([ChatMessage("system", "Be kind."), ChatMessage("user", "Hi")])
    assert prompt == (
        "<s><|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    with_bos = scripted.count_tokens(prompt)
    assert with_bos == scripted.count_tokens(prompt.removeprefix("<s>"))


def test_chat_mode_without_template_is_a_clear_error(backend: MlxBackend) -> None:
    plain = backend
    assert not plain.has_chat_template
    assert plain.info.chat_template_sha256 is None
    with pytest.raises(ModelLoadError, match="no chat template"):
        plain.render_chat([ChatMessage("user", "Hi")])


def test_threads_take_turns(backend: MlxBackend) -> None:
    expected = [backend.generate(request("you", seed=s, temperature=1.0)).text for s in range(4)]
    got: dict[int, str] = {}

    def run(seed: int) -> None:
        got[seed] = backend.generate(request("you", seed=seed, temperature=1.0)).text

    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [got[s] for s in range(4)] == expected


def test_close_then_generate_is_an_error(mlx_folder: Path) -> None:
    closing = MlxBackend.load(mlx_folder)
    closing.close()
    closing.close()
    with pytest.raises(GenerationError, match="closed"):
        closing.generate(request("hello"))


TEXTS = ("Hello world", "naïve 世界 🙂 — done.\n\tok", "  two  spaces", "<|im_end|> after")


def test_token_bytes_match_the_tokenizers_own_decoding(
    tmp_path: Path, scripted_folder: Path
) -> None:
    """Per-token bytes (how text is streamed) agree with Hugging Face decoding, for a
    SentencePiece-style vocabulary and for a byte-level BPE one (GPT-2/Llama 3/Qwen style)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from persona_tui.backends.mlx.tokens import token_byte_table

    byte_level = Tokenizer(models.BPE())
    byte_level.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    byte_level.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    byte_level.train_from_iterator([*TEXTS, "hello world, the bully plays"] * 20, trainer)
    folder = tmp_path / "byte-level"
    folder.mkdir()
    byte_level.save(str(folder / "tokenizer.json"))

    for path, strip_first_space in ((scripted_folder, True), (folder, False)):
        hf = PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))
        table = token_byte_table(path, hf)
        assert table is not None
        for text in TEXTS:
            ids = hf.encode(text, add_special_tokens=False)
            streamed = b"".join(table[i] for i in ids).decode("utf-8")
            expected = hf.decode(ids, skip_special_tokens=True)
            assert (streamed[1:] if strip_first_space else streamed) == expected


# ------------------------------------------------------------------------- parity


def test_greedy_parity_with_llama_cpp(tmp_path: Path) -> None:
    """The same weights and vocabulary give the same greedy tokens through both engines."""
    from persona_tui.backends.llamacpp.backend import LlamaCppBackend

    gguf = tiny_gguf.write_tiny_gguf(tmp_path / "parity.gguf", seed=3)
    mlx = MlxBackend.load(gguf_to_mlx(gguf, tmp_path / "parity-mlx"))
    llama = LlamaCppBackend.load(gguf, n_ctx=512, n_threads=1)
    try:
        for prompt in ("User: Hello world\nAssistant:", "the bully and you", "Hi! what? 世界 🙂"):
            assert mlx.count_tokens(prompt) == llama.count_tokens(prompt)
            greedy = request(prompt, temperature=0, max_tokens=32)
            ours, theirs = mlx.generate(greedy), llama.generate(greedy)
            assert ours.text == theirs.text
            assert ours.completion_tokens == theirs.completion_tokens
    finally:
        llama.close()
