"""Reading a streamed answer: Server-Sent Events from an httpx response, and cancelling it.

The events are parsed here rather than with an SSE package (httpx-sse) because
llama.cpp's llama-server reports a failure mid-stream as a non-standard `error:` field,
which a standard SSE parser drops (the user would be told only that the stream ended
early), and lines are split at line feeds in the raw bytes, not with httpx's
`iter_lines`, which also splits at U+2028, U+0085 and other characters a server may
leave unescaped inside a JSON string (a model can generate them).

A read blocked on a silent server is interrupted from another thread by shutting the
connection's socket down (closing it would not wake the reader).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from persona_tui.errors import GenerationError

if TYPE_CHECKING:
    import httpx

_CANCEL_POLL_SECONDS = 0.05


def byte_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a byte stream split at b"\\n" only (without it); the last even unended."""
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        if b"\n" not in chunk:
            continue
        *complete, rest = pending.split(b"\n")
        yield from (bytes(line) for line in complete)
        pending = rest
    if pending:
        yield bytes(pending)


def sse_data(response: httpx.Response) -> Iterator[str]:
    """The `data` payloads of a Server-Sent Events stream, one per event."""
    lines: list[str] = []
    for raw in byte_lines(response.iter_bytes()):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith(":"):
            continue  # a comment, e.g. a keep-alive ping
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            lines.append(value)
        elif field == "error":  # llama-server's in-stream error event
            raise GenerationError(f"the server reported an error: {value}")
    if lines:
        yield "\n".join(lines)


class CancelWatcher:
    """Shuts a response's connection down when `cancel` is set, unblocking a waiting read."""

    def __init__(self, cancel: threading.Event, response: httpx.Response) -> None:
        self._cancel = cancel
        stream = response.extensions.get("network_stream")
        self._socket: socket.socket | None = (
            stream.get_extra_info("socket") if stream is not None else None
        )
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="openai-cancel", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(_CANCEL_POLL_SECONDS):
            if self._cancel.is_set():
                if self._socket is not None:
                    with contextlib.suppress(OSError):
                        self._socket.shutdown(socket.SHUT_RDWR)
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
