"""Build a tiny MLX model folder with the same weights and vocabulary as a tiny GGUF.

`gguf_to_mlx` converts an f32 llama GGUF (such as the one `tests/tiny_gguf.py` writes) into
an MLX model folder: `config.json`, `model.safetensors` written with `mx.save_safetensors`
after loading the weights into mlx-lm's own llama class (strict, so every name and shape
is checked), and a Hugging Face tokenizer built with the `tokenizers` library
(`tokenizer.json` + `tokenizer_config.json`) that tokenizes like llama.cpp's SPM tokenizer
does for that vocabulary. The same model through both engines is what the parity check
needs, and the tiny GGUF's scripted transitions carry over to MLX for the stop-string tests.

llama.cpp's llama architecture applies RoPE to interleaved pairs while Hugging Face/MLX
llama rotates halves, so the GGUF's Q and K rows are un-permuted here (the inverse of
`convert_hf_to_gguf.py`'s `permute`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

_CONTROL, _BYTE = 3, 6
_SPECIAL_TYPES = {2, 3, 4}  # unknown, control, user-defined: never built by merges


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.get_field(key)
    return default if field is None else field.contents()


def _unpermute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of convert_hf_to_gguf's permute: GGUF (interleaved) rows → HF (halves) rows."""
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, rows // n_head // 2, 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def _hf_weights(reader: Any, n_head: int, n_head_kv: int) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        if tensor.tensor_type != 0:  # GGML_TYPE_F32
            raise ValueError(f"{tensor.name}: only f32 GGUF tensors are supported here")
        data = np.array(tensor.data, dtype=np.float32).reshape(
            [int(d) for d in reversed(tensor.shape)]
        )
        name = tensor.name
        if name == "token_embd.weight":
            weights["model.embed_tokens.weight"] = data
        elif name == "output_norm.weight":
            weights["model.norm.weight"] = data
        elif name == "output.weight":
            weights["lm_head.weight"] = data
        elif name.startswith("blk."):
            _, layer, rest = name.split(".", 2)
            if rest == "attn_q.weight":
                data = _unpermute(data, n_head)
            elif rest == "attn_k.weight":
                data = _unpermute(data, n_head_kv)
            weights[f"model.layers.{layer}.{_LAYER_NAMES[rest]}"] = data
        else:
            raise ValueError(f"unexpected tensor {name}")
    return weights


def _tokenizer_files(reader: Any, folder: Path, context_length: int) -> None:
    """Write tokenizer.json/tokenizer_config.json equivalent to llama.cpp's SPM tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    if _field(reader, "tokenizer.ggml.model") != "llama":
        raise ValueError("only SentencePiece-style ('llama') GGUF vocabularies are supported")
    pieces: list[str] = list(_field(reader, "tokenizer.ggml.tokens"))
    scores = [float(s) for s in _field(reader, "tokenizer.ggml.scores")]
    kinds = [int(k) for k in _field(reader, "tokenizer.ggml.token_type")]
    bos_id = int(_field(reader, "tokenizer.ggml.bos_token_id"))
    eos_id = int(_field(reader, "tokenizer.ggml.eos_token_id"))
    unk_id = int(_field(reader, "tokenizer.ggml.unknown_token_id", 0))
    add_bos = bool(_field(reader, "tokenizer.ggml.add_bos_token", True))
    chat_template = _field(reader, "tokenizer.chat_template")

    vocab = {piece: i for i, piece in enumerate(pieces)}
    mergeable = {p: scores[i] for i, p in enumerate(pieces) if kinds[i] not in _SPECIAL_TYPES}
    mergeable = {p: s for p, s in mergeable.items() if kinds[vocab[p]] != _BYTE}
    # SPM merges the adjacent pair whose concatenation scores highest; BPE merges by rank.
    # Ranking every (left, right) split of a piece by the piece's score makes them agree.
    ranked: list[tuple[float, str, str]] = []
    for piece, score in mergeable.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in mergeable and right in mergeable:
                ranked.append((score, left, right))
    ranked.sort(key=lambda item: -item[0])
    merges = [(left, right) for _, left, right in ranked]

    model = models.BPE(
        vocab=vocab,
        merges=merges,
        unk_token=pieces[unk_id],
        byte_fallback=True,
        fuse_unk=True,
    )
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
    )
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    special = [pieces[i] for i, kind in enumerate(kinds) if kind in _SPECIAL_TYPES]
    tokenizer.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in special])
    bos = pieces[bos_id]
    if add_bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    tokenizer.save(str(folder / "tokenizer.json"))
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": pieces[eos_id],
        "unk_token": pieces[unk_id],
        "add_bos_token": add_bos,
        "model_max_length": context_length,
        "clean_up_tokenization_spaces": False,
    }
    if chat_template:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def gguf_to_mlx(gguf_path: Path, folder: Path) -> Path:
    """Convert an f32 llama GGUF into an MLX model folder at `folder`; return the folder."""
    import mlx.core as mx
    from gguf import GGUFReader
    from mlx_lm.models import llama

    reader = GGUFReader(str(gguf_path))
    dim = int(_field(reader, "llama.embedding_length"))
    n_head = int(_field(reader, "llama.attention.head_count"))
    n_head_kv = int(_field(reader, "llama.attention.head_count_kv", n_head))
    context_length = int(_field(reader, "llama.context_length"))
    pieces = _field(reader, "tokenizer.ggml.tokens")
    config: dict[str, Any] = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": dim,
        "num_hidden_layers": int(_field(reader, "llama.block_count")),
        "intermediate_size": int(_field(reader, "llama.feed_forward_length")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_head_kv,
        "rms_norm_eps": float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, "llama.rope.freq_base", 10000.0)),
        "vocab_size": len(pieces),
        "max_position_embeddings": context_length,
        "tie_word_embeddings": False,
        "bos_token_id": int(_field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(_field(reader, "tokenizer.ggml.eos_token_id")),
        "torch_dtype": "float32",
    }
    weights = _hf_weights(reader, n_head, n_head_kv)

    folder.mkdir(parents=True, exist_ok=True)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    arrays = {name: mx.array(value) for name, value in weights.items()}
    model.load_weights(list(arrays.items()), strict=True)  # checks names and shapes
    mx.save_safetensors(str(folder / "model.safetensors"), arrays, metadata={"format": "mlx"})
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    _tokenizer_files(reader, folder, context_length)
    return folder


def write_tiny_mlx(folder: Path, **gguf_options: Any) -> Path:
    """Write the tiny test model (see tests/tiny_gguf.py for the options) as an MLX folder."""
    from tests.tiny_gguf import write_tiny_gguf

    folder.mkdir(parents=True, exist_ok=True)
    source = folder.parent / f".{folder.name}.source.gguf"
    write_tiny_gguf(source, **gguf_options)
    try:
        return gguf_to_mlx(source, folder)
    finally:
        source.unlink(missing_ok=True)
