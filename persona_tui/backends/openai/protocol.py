"""The JSON of OpenAI-compatible APIs: model listings, request bodies, streamed events.

Servers differ in the details (llama.cpp's llama-server, llama-cpp-python's server,
vLLM, Ollama, LM Studio); the functions here read what each of them sends and write
what all of them accept, so the backend itself deals only in plain values.
"""

from __future__ import annotations

import json
from typing import Any

from persona_tui.backends.base import GenerationRequest
from persona_tui.backends.openai.failures import error_message
from persona_tui.backends.openai.ref import OpenAIRef
from persona_tui.errors import GenerationError, ModelLoadError

# ---------------------------------------------------------------------- model listing


def context_from_entry(entry: dict[str, Any]) -> int:
    """The context length a model listing reports (vLLM: max_model_len; llama-server: meta)."""
    for value in (
        entry.get("max_model_len"),
        entry.get("context_length"),
        (entry.get("meta") or {}).get("n_ctx") if isinstance(entry.get("meta"), dict) else None,
    ):
        if isinstance(value, int) and value > 0:
            return value
    return 0


def choose_model(ref: OpenAIRef, models: list[dict[str, Any]]) -> dict[str, Any]:
    """The listing entry of the model `ref` names (or of the only model served)."""
    ids = [str(m["id"]) for m in models]
    if ref.model:
        for entry in models:
            if str(entry["id"]) == ref.model:
                return entry
        if not models:  # some servers list nothing; trust the name given
            return {"id": ref.model}
        raise ModelLoadError(
            f"the server at {ref.base_url} does not serve {ref.model!r}; it serves: "
            f"{', '.join(ids)} (write openai:{ref.base_url}#ONE_OF_THESE)"
        )
    if len(models) == 1:
        return models[0]
    if not models:
        raise ModelLoadError(
            f"the server at {ref.base_url} lists no models; name one: openai:{ref.base_url}#MODEL"
        )
    raise ModelLoadError(
        f"the server at {ref.base_url} serves several models ({', '.join(ids)}); name one: "
        f"openai:{ref.base_url}#MODEL"
    )


# -------------------------------------------------------------------------- requests


def request_body(
    model: str, request: GenerationRequest, messages: list[dict[str, str]] | None
) -> dict[str, Any]:
    """A streamed /completions body (`messages` None) or /chat/completions body."""
    params = request.sampling
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": request.seed,
        # Extensions that llama.cpp's servers, vLLM and LM Studio accept:
        "top_k": params.top_k,
        "min_p": params.min_p,
        "repeat_penalty": params.repeat_penalty,  # llama.cpp
        "repetition_penalty": params.repeat_penalty,  # vLLM
    }
    if request.stop:
        body["stop"] = list(request.stop)
    if messages is None:
        body["prompt"] = request.prompt
    else:
        body["messages"] = messages
    return body


def tokenize_body(model: str, text: str) -> dict[str, Any]:
    """A body every known tokenize endpoint accepts (each reads its own field)."""
    return {
        "model": model,
        "content": text,  # llama-server
        "prompt": text,  # vLLM
        "input": text,  # llama-cpp-python
        "add_special": True,
    }


def token_count(reply: Any) -> int | None:
    """The token count in a tokenize endpoint's answer (`count`, or the `tokens` list)."""
    count = reply.get("count") if isinstance(reply, dict) else None
    tokens = reply.get("tokens") if isinstance(reply, dict) else None
    if not isinstance(count, int) and isinstance(tokens, list):
        count = len(tokens)
    return count if isinstance(count, int) else None


# ---------------------------------------------------------------------------- events


def parse_event(data: str) -> dict[str, Any]:
    """One streamed event's JSON; GenerationError for garbage or an in-stream error."""
    try:
        event = json.loads(data)
    except ValueError as error:
        raise GenerationError(
            f"the server sent an event that is not JSON: {data[:200]!r}"
        ) from error
    if not isinstance(event, dict):
        raise GenerationError(f"the server sent an unexpected event: {data[:200]!r}")
    if "error" in event:
        message, _ = error_message(500, data.encode("utf-8"))
        raise GenerationError(f"the server reported an error while generating: {message}")
    return event


def choice_text(choice: Any, *, chat: bool) -> tuple[str | None, str | None]:
    """(text of this chunk or None when it carries none, finish reason or None)."""
    if not isinstance(choice, dict):
        return None, None
    finish = choice.get("finish_reason")
    if chat:
        delta = choice.get("delta") or {}
        text = delta.get("content") if isinstance(delta, dict) else None
    else:
        text = choice.get("text")
    return (text if isinstance(text, str) else None), (str(finish) if finish else None)


def int_or(value: Any, default: int) -> int:
    """`value` when it is an int (not a bool), else `default`."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def evaluated_prompt_tokens(
    prompt_tokens: int, usage: dict[str, Any], timings: dict[str, Any]
) -> int:
    """Prompt tokens the server evaluated (not served from its prefix cache), if it says.

    llama-server reports `timings.prompt_n`; vLLM (with prompt-token details enabled)
    `usage.prompt_tokens_details.cached_tokens`. Otherwise the whole prompt is counted,
    an upper bound.
    """
    if "prompt_n" in timings:
        return int_or(timings.get("prompt_n"), prompt_tokens)
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        return max(prompt_tokens - int(details["cached_tokens"]), 0)
    return prompt_tokens
