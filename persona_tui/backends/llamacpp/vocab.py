"""A GGUF model's tokens and chat template, as the llama.cpp backend uses them.

Prompts are tokenized as the model expects (its own BOS rule, special tokens parsed, no
double BOS when a rendered chat template starts with the BOS text); a token's bytes come
from llama.cpp's `llama_token_to_piece`; chat messages are rendered with the GGUF's own
Jinja template. None of this takes the backend's lock: the backend holds it around calls.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from persona_tui.backends.base import ChatMessage, GenerationRequest
from persona_tui.backends.common import chat_template_failed


class LlamaVocab:
    """The vocabulary of a loaded `llama_cpp.Llama` (weights or `vocab_only`)."""

    def __init__(self, llama: Any, model_name: str) -> None:
        model = llama._model
        self._llama = llama
        self._model_name = model_name
        self._formatter: Any = None
        self.bos = model.token_bos()
        self.eos = model.token_eos()
        self.add_bos = bool(model.add_bos_token())
        self.n_vocab = int(model.n_vocab())
        self._vocab = model.vocab
        self._piece_buffer = ctypes.create_string_buffer(64)

    def tokenize(self, text: str) -> list[int]:
        """Tokens the model sees for `text`: BOS per the model, special tokens parsed.

        Prompts rendered from chat templates often start with the BOS token as text;
        that would give a double BOS, so one is dropped.
        """
        tokens: list[int] = self._llama.tokenize(
            text.encode("utf-8"), add_bos=self.add_bos, special=True
        )
        if self.add_bos and len(tokens) >= 2 and tokens[0] == tokens[1] == self.bos:
            tokens = tokens[1:]
        return tokens

    def piece(self, token: int) -> bytes:
        """The bytes of `token` (a character may span several tokens)."""
        import llama_cpp

        buffer = self._piece_buffer
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        if n < 0:
            self._piece_buffer = buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n]

    def is_end(self, token: int) -> bool:
        """True for an end-of-generation token (end of sequence, end of turn ...)."""
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    @property
    def end_of_turn_token(self) -> int:
        """The token a chat turn ends with: end-of-turn when the model has one, else
        end-of-sequence."""
        model = self._llama._model
        eot = int(model.token_eot())
        return eot if eot >= 0 else int(model.token_eos())

    def framing_tokens(self, request: GenerationRequest, tokens: Sequence[int]) -> int:
        """How many leading tokens lie within the request's shared framing text."""
        if request.framing_chars <= 0:
            return 0
        budget = len(request.prompt[: request.framing_chars].encode("utf-8"))
        used = 0
        for index, token in enumerate(tokens):
            used += len(self.piece(token))
            if used > budget:
                return index
        return len(tokens)

    def render_chat(self, template: str, messages: Sequence[ChatMessage]) -> str:
        """Render with the GGUF's chat `template`, ending with the assistant's turn."""
        try:
            if self._formatter is None:
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                model = self._llama._model
                self._formatter = Jinja2ChatFormatter(
                    template=template,
                    bos_token=model.token_get_text(self.bos) if self.bos >= 0 else "",
                    eos_token=model.token_get_text(self.eos) if self.eos >= 0 else "",
                    add_generation_prompt=True,
                )
            dicts = [{"role": m.role, "content": m.content} for m in messages]
            return str(self._formatter(messages=dicts).prompt)
        except Exception as exc:  # jinja2 syntax errors, raise_exception() in templates
            raise chat_template_failed(self._model_name, exc) from exc
