"""Prompt log-probabilities from a server: the echo request and reading its answer.

A likelihood probe needs the log-probabilities of an answer option's tokens after the
prompt. The legacy OpenAI way, which vLLM and llama-cpp-python's server answer, is one
non-streamed `/completions` request for prompt + option with `echo` and `logprobs`; the
option's tokens are the echo's last tokens, those that spell it.
"""

from __future__ import annotations

from typing import Any

from persona_tui.errors import PersonaError


def echo_body(model: str, text: str) -> dict[str, Any]:
    """A `/completions` body asking for the log-probabilities of `text`'s own tokens."""
    return {
        "model": model,
        "prompt": text,
        "max_tokens": 1,
        "temperature": 0.0,
        "echo": True,
        "logprobs": 1,
        "stream": False,
    }


def no_prompt_logprobs(base_url: str) -> str:
    return (
        f"the server at {base_url} gives no prompt log-probabilities (/v1/completions with "
        "echo and logprobs), so it cannot score answer options; vLLM and llama-cpp-python's "
        "server do, llama.cpp's llama-server does not; or score with the model file "
        "(--no-score skips scoring)"
    )


def continuation_values(answer: Any, continuation: int, base_url: str) -> list[float]:
    """The echoed log-probabilities of the last `continuation` characters of the prompt.

    Offsets are counted back from the end of the echo (the first generated token's
    offset, or the end of the last token): servers count them in their own detokenized
    text, which may differ from the prompt at its start (a tokenizer's leading space).
    """
    try:
        choice = answer["choices"][0]
        logprobs = choice["logprobs"]
        offsets = [int(o) for o in logprobs["text_offset"]]
        values = list(logprobs["token_logprobs"])
        tokens = [str(t) for t in logprobs["tokens"]]
        generated = int((answer.get("usage") or {}).get("completion_tokens", 1))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise PersonaError(no_prompt_logprobs(base_url)) from None
    echoed = len(offsets) - generated
    if not (len(offsets) == len(values) == len(tokens)) or echoed < 1:
        raise PersonaError(no_prompt_logprobs(base_url))
    end = offsets[echoed] if generated else offsets[-1] + len(tokens[-1])
    start = end - continuation
    if start not in offsets[:echoed]:
        raise PersonaError(
            f"the server at {base_url} tokenized the end of the prompt and the start of an "
            "answer option as one token, so the option's own log-probability cannot be read"
        )
    picked = [v for offset, v in zip(offsets[:echoed], values, strict=False) if offset >= start]
    if not picked or any(not isinstance(v, int | float) for v in picked):
        raise PersonaError(no_prompt_logprobs(base_url))
    return [float(v) for v in picked]
