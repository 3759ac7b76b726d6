"""Generated MLX token ids → bytes, the way llama.cpp turns tokens into text.

mlx-lm's streaming detokenizers drop the first generated token's leading space and print
control tokens as text; here, as in llama.cpp, the text keeps that space (it continues
the prompt), control tokens contribute nothing, and a turn ends at the same special
tokens. Bytes, not text, are produced, so that a character split across byte tokens is
decoded whole downstream (see `StopStringStream`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from persona_tui._util.textdata import DataFileError, loads_json

# Tokens llama.cpp also treats as the end of a turn when the tokenizer marks them special.
END_OF_TURN_TOKENS = frozenset(
    {
        "</s>",
        "<|endoftext|>",
        "<|end_of_text|>",
        "<|eot_id|>",
        "<|eom_id|>",
        "<|im_end|>",
        "<|end|>",
        "<end_of_turn>",
        "<|return|>",
        "<EOT>",
    }
)


def end_of_turn_ids(eos_token_ids: Any, hf_tokenizer: Any) -> frozenset[int]:
    """EOS ids plus special tokens that end a turn (as llama.cpp's end-of-generation set)."""
    ids = {int(i) for i in eos_token_ids}
    added = getattr(hf_tokenizer, "added_tokens_decoder", {})
    for token_id, token in added.items():
        if getattr(token, "special", False) and str(token) in END_OF_TURN_TOKENS:
            ids.add(int(token_id))
    return frozenset(ids)


# Markers that end a chat turn (not the whole text), in the order they are preferred.
CHAT_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|return|>", "<EOT>")


def chat_end_token(hf_tokenizer: Any, end_ids: frozenset[int]) -> int:
    """The token a chat turn ends with (as llama.cpp's end-of-turn, else end-of-sequence)."""
    vocab = hf_tokenizer.get_vocab()
    for name in CHAT_END_TOKENS:
        token = vocab.get(name)
        if token is not None and int(token) in end_ids:
            return int(token)
    eos = hf_tokenizer.eos_token_id
    return int(eos) if eos is not None else min(end_ids)


class CompletionBytes:
    """Turns generated token ids into bytes, like llama.cpp's token_to_piece.

    With a per-token byte table (SentencePiece-style and byte-level BPE tokenizers) each
    token gives its own bytes; otherwise the whole completion is re-decoded and the bytes
    of the new suffix returned (slower, but right for any tokenizer).
    """

    def __init__(self, table: list[bytes] | None, decode: Callable[[list[int]], str]) -> None:
        self._table = table
        self._decode = decode
        self._ids: list[int] = []
        self._sent = ""

    def add(self, token: int) -> bytes:
        """The bytes `token` adds to the completion (b"" while a character is incomplete)."""
        if self._table is not None:
            return self._table[token] if 0 <= token < len(self._table) else b""
        self._ids.append(token)
        text = self._decode(self._ids)
        if text.endswith("\ufffd") or not text.startswith(self._sent):
            return b""  # an incomplete character (or a re-spelling): wait for more tokens
        new, self._sent = text[len(self._sent) :], text
        return new.encode("utf-8")

    def finish(self) -> bytes:
        """The bytes still held back at the end of the completion (re-decoding only)."""
        if self._table is not None or not self._ids:
            return b""
        text = self._decode(self._ids)
        new = text[len(self._sent) :] if text.startswith(self._sent) else ""
        self._sent = text
        return new.encode("utf-8")


_GPT2_BYTES: dict[str, int] | None = None


def _byte_level_map() -> dict[str, int]:
    """GPT-2's printable-character → byte map used by byte-level BPE vocabularies."""
    global _GPT2_BYTES
    if _GPT2_BYTES is None:
        printable = [
            *range(ord("!"), ord("~") + 1),
            *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1),
        ]
        chars = list(printable)
        extra = 0
        for byte in range(256):
            if byte not in printable:
                printable.append(byte)
                chars.append(256 + extra)
                extra += 1
        _GPT2_BYTES = {chr(c): b for b, c in zip(printable, chars, strict=True)}
    return _GPT2_BYTES


def token_byte_table(folder: Path, hf_tokenizer: Any) -> list[bytes] | None:
    """Each token's bytes when the tokenizer's decoder is one we can mirror exactly."""
    try:
        spec = loads_json((folder / "tokenizer.json").read_bytes(), folder / "tokenizer.json")
    except (OSError, DataFileError):
        return None
    if not isinstance(spec, dict):
        return None
    decoder = json.dumps(spec.get("decoder"))
    if '"ByteLevel"' in decoder:
        kind = "byte-level"
    elif '"ByteFallback"' in decoder or '"Metaspace"' in decoder or "\u2581" in decoder:
        kind = "sentencepiece"
    else:
        return None
    size = len(hf_tokenizer)
    pieces: list[str] = hf_tokenizer.convert_ids_to_tokens(list(range(size)))
    added = {int(t["id"]): t for t in spec.get("added_tokens", []) if isinstance(t, dict)}
    special = {i for i, t in added.items() if t.get("special")}
    special |= set(getattr(hf_tokenizer, "all_special_ids", []))
    byte_map = _byte_level_map()
    table: list[bytes] = []
    for token_id, piece in enumerate(pieces):
        if token_id in special or piece is None:
            table.append(b"")  # control tokens add no text (llama.cpp: special=False)
        elif token_id in added:  # user-defined tokens are their literal content
            table.append(str(added[token_id].get("content", piece)).encode("utf-8"))
        elif kind == "sentencepiece":
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                table.append(bytes([int(piece[3:5], 16)]))
            else:
                table.append(piece.replace("\u2581", " ").encode("utf-8"))
        elif all(char in byte_map for char in piece):
            table.append(bytes(byte_map[char] for char in piece))
        else:  # not byte-level after all: its text as is
            table.append(piece.encode("utf-8"))
    return table
