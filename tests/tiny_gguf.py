"""Write a tiny random-weight llama GGUF that llama.cpp loads for real.

The model is a 2-layer, 64-dim llama with a SentencePiece-style ("llama") vocabulary of
a few hundred tokens: control tokens, the 256 byte tokens <0x00>..<0xFF>, single
characters (including multi-byte ones) and a few words built up from their prefixes so
the SPM merges can reach them. Byte tokens let it emit arbitrary bytes (control
characters, split or invalid UTF-8), which is what the storage and streaming tests need.

Its output is gibberish, except along `transitions`: the output head is biased so that
after token A the model (almost surely, at any temperature) emits token B. Tests use that
to script exact continuations (multi-byte characters split across byte tokens, stop
strings split across tokens, end-of-turn tokens) without a trained model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np

DIM = 64
N_HEAD = 4
N_LAYER = 2
N_FF = 128
CONTEXT_LENGTH = 4096

# GGUF token types (llama.cpp's llama_token_type).
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CHARS = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list(".,:;!?'\"-()[]{}<>/*+=_#@&%$")
    + ["▁", "é", "ü", "ß", "ñ", "世", "界", "—", "…", "🙂", "Ω"]
)
_WORDS = [
    "▁User",
    "▁Assistant",
    "User",
    "Assistant",
    "▁Hello",
    "▁Hi",
    "▁hello",
    "▁world",
    "▁the",
    "▁you",
    "▁are",
    "▁and",
    "▁what",
    "▁STOP",
    "▁END",
    "▁naïve",
    "▁bully",
    "▁play",
]


def _build_vocab() -> list[tuple[str, float, int]]:
    vocab: list[tuple[str, float, int]] = [
        ("<unk>", 0.0, _UNKNOWN),
        ("<s>", 0.0, _CONTROL),
        ("</s>", 0.0, _CONTROL),
        ("<|im_start|>", 0.0, _CONTROL),
        ("<|im_end|>", 0.0, _CONTROL),
    ]
    vocab += [(f"<0x{b:02X}>", 0.0, _BYTE) for b in range(256)]
    seen: set[str] = set()
    pieces: list[str] = []
    for char in _CHARS:
        if char not in seen:
            seen.add(char)
            pieces.append(char)
    for word in _WORDS:
        # SPM merges two adjacent symbols at a time, so every prefix must be a piece.
        for end in range(2, len(word) + 1):
            prefix = word[:end]
            if prefix not in seen:
                seen.add(prefix)
                pieces.append(prefix)
    # Longer pieces score higher so merges prefer them.
    vocab += [(p, float(len(p)) - i * 1e-3, _NORMAL) for i, p in enumerate(pieces)]
    return vocab


VOCAB: list[tuple[str, float, int]] = _build_vocab()
_IDS = {piece: i for i, (piece, _, _) in enumerate(VOCAB)}
BOS_ID = _IDS["<s>"]
EOS_ID = _IDS["</s>"]
IM_END_ID = _IDS["<|im_end|>"]


def token_id(piece: str) -> int:
    """The id of a vocabulary piece, e.g. "▁Hello", "<0xC3>", "<|im_end|>"."""
    return _IDS[piece]


def byte_piece(value: int) -> str:
    """The byte token's piece for one byte value (0..255)."""
    return f"<0x{value:02X}>"


def chain(*pieces: str) -> dict[str, str]:
    """Transitions making the model continue pieces[0] with pieces[1], pieces[2], ..."""
    return dict(pairwise(pieces))


def write_tiny_gguf(
    path: Path,
    *,
    with_chat_template: bool = False,
    transitions: Mapping[str, str] | None = None,
    seed: int = 0,
    context_length: int = CONTEXT_LENGTH,
    name: str = "tiny-test-llama",
    extra_metadata: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write the tiny model to `path` and return it (f32 weights, fixed numpy seed)."""
    import gguf

    rng = np.random.default_rng(seed)
    n_vocab = len(VOCAB)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(context_length)
    writer.add_embedding_length(DIM)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_rope_dimension_count(DIM // N_HEAD)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(0)  # LLAMA_FTYPE_ALL_F32
    writer.add_tokenizer_model("llama")
    writer.add_token_list([piece for piece, _, _ in VOCAB])
    writer.add_token_scores([score for _, score, _ in VOCAB])
    writer.add_token_types([kind for _, _, kind in VOCAB])
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(_IDS["<unk>"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if with_chat_template:
        writer.add_chat_template(CHAT_TEMPLATE)
    for key, value in extra_metadata:
        writer.add_string(key, value)

    def weights(*shape: int, std: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    embeddings = weights(n_vocab, DIM, std=1.0)
    writer.add_tensor("token_embd.weight", embeddings)
    for layer in range(N_LAYER):
        prefix = f"blk.{layer}."
        writer.add_tensor(prefix + "attn_norm.weight", np.ones(DIM, dtype=np.float32))
        for part in ("q", "k", "v", "output"):
            writer.add_tensor(prefix + f"attn_{part}.weight", weights(DIM, DIM))
        writer.add_tensor(prefix + "ffn_norm.weight", np.ones(DIM, dtype=np.float32))
        writer.add_tensor(prefix + "ffn_gate.weight", weights(N_FF, DIM))
        writer.add_tensor(prefix + "ffn_up.weight", weights(N_FF, DIM))
        writer.add_tensor(prefix + "ffn_down.weight", weights(DIM, N_FF))
    writer.add_tensor("output_norm.weight", np.ones(DIM, dtype=np.float32))
    # Logits have a standard deviation of ~2: varied samples that depend on the seed.
    output = weights(n_vocab, DIM, std=0.25)
    if transitions:
        # The residual stream is ~ the current token's embedding, so adding its direction
        # to the next token's output row makes that token win by ~30 logits.
        rms = np.sqrt(np.mean(embeddings**2, axis=1, keepdims=True))
        normalized = embeddings / rms
        for source, target in transitions.items():
            output[_IDS[target]] += 0.5 * normalized[_IDS[source]]
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
