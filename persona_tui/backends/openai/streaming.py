"""A streamed completion read into a GenerationResult: text, finish reason, token counts.

The events of `/completions` and `/chat/completions` streams are fed through the stop
strings (held back across chunks) to the caller's text callback. A stream must end
with a finish reason: one that breaks off or just ends without one fails the generation
(GenerationError), never a silently shortened text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from persona_tui.backends.base import GenerationRequest, GenerationResult, TextCallback
from persona_tui.backends.common import emit, is_cancelled, make_result
from persona_tui.backends.openai.failures import describe_error
from persona_tui.backends.openai.protocol import (
    choice_text,
    evaluated_prompt_tokens,
    int_or,
    parse_event,
)
from persona_tui.backends.openai.sse import sse_data
from persona_tui.backends.stream import StopStringStream
from persona_tui.errors import GenerationError
from persona_tui.values import FinishReason

if TYPE_CHECKING:
    import httpx


class UnfinishedStream(Exception):
    """A stream that ended without a finish reason, after `pieces` streamed pieces."""

    def __init__(self, pieces: int, message: str) -> None:
        super().__init__(message)
        self.pieces = pieces


def read_stream(
    response: httpx.Response,
    request: GenerationRequest,
    *,
    chat: bool,
    base_url: str,
    on_text: TextCallback | None,
    cancel: threading.Event | None,
    started: float,
    prompt_tokens_fallback: Callable[[], int],
) -> GenerationResult:
    """Read `response` (a stream for `request`) to its end, a stop string or a cancel.

    `prompt_tokens_fallback` gives the prompt's token count when the server reports no
    usage. Raises GenerationError when the connection breaks, UnfinishedStream when the
    stream ends without a finish reason.
    """
    import httpx

    stream = StopStringStream(request.stop)
    chunks = 0
    server_finish: str | None = None
    usage: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    done = False
    try:
        for data in sse_data(response):
            if data.strip() == "[DONE]":
                done = True
                break
            event = parse_event(data)
            usage = event.get("usage") or usage
            timings = event.get("timings") or timings
            for choice in event.get("choices") or []:
                text, ended = choice_text(choice, chat=chat)
                if text is not None and (text or ended is None):
                    chunks += 1
                if text:
                    emit(on_text, stream.feed(text.encode("utf-8")))
                server_finish = ended or server_finish
            if stream.stopped or is_cancelled(cancel):
                break
    except httpx.RemoteProtocolError:
        # The server closed the connection inside the body (it crashed or was stopped):
        # the stream ended, and the check for a finish reason below says so.
        pass
    except (OSError, httpx.HTTPError) as error:
        if not is_cancelled(cancel):
            raise GenerationError(
                f"the connection to {base_url} broke after {chunks} streamed "
                f"pieces ({describe_error(error)}); this trial failed, resume the session to "
                "retry it"
            ) from error
    if is_cancelled(cancel) and not stream.stopped:
        return make_result(
            stream.text,
            "cancelled",
            prompt_tokens=0,
            completion_tokens=chunks,
            evaluated=0,
            started=started,
        )
    if not (server_finish or stream.stopped):
        # A stream must end with a finish reason; without one the server crashed, was
        # stopped, or (llama-cpp-python's server) interrupted this request for another.
        ending = "closed" if done else "ended"
        raise UnfinishedStream(
            chunks,
            f"the server at {base_url} {ending} the stream after {chunks} "
            "pieces without a finish reason (did it crash, stop, or interrupt this "
            "request for another?); this trial failed, resume the session to retry it",
        )
    emit(on_text, stream.finish())
    finish: FinishReason = "length" if server_finish == "length" else "stop"
    if stream.stopped:
        finish = "stop"
    prompt_tokens = int_or(usage.get("prompt_tokens"), -1)
    if prompt_tokens < 0:
        prompt_tokens = prompt_tokens_fallback()
    return make_result(
        stream.text,
        finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=int_or(usage.get("completion_tokens"), chunks),
        evaluated=evaluated_prompt_tokens(prompt_tokens, usage, timings),
        started=started,
    )
