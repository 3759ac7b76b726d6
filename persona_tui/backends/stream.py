"""Turn a stream of token bytes into text pieces that are safe to show and store.

Shared by every backend that samples token by token. Two problems it solves:
- a UTF-8 character split across tokens (byte-fallback tokens) must not show up as
  replacement characters mid-stream: bytes are decoded incrementally;
- a stop string split across tokens must not leak: text that could be the start of a
  stop string is held back until it is known not to be one.
The concatenation of everything `feed` and `finish` return equals `text`.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable


class StopStringStream:
    """Incremental UTF-8 decoding with stop-string detection and hold-back."""

    def __init__(self, stops: Iterable[str] = ()) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._emitted = 0
        self._stopped = False

    @property
    def stopped(self) -> bool:
        """True once a stop string was found; `text` then ends just before it."""
        return self._stopped

    @property
    def text(self) -> str:
        """The final text so far: everything emitted (after `finish`, all of it)."""
        return self._text[: self._emitted]

    def feed(self, data: bytes) -> str:
        """Add a token's bytes; return the new text that is safe to emit (may be "")."""
        if self._stopped:
            return ""
        self._text += self._decoder.decode(data)
        return self._advance(final=False)

    def finish(self) -> str:
        """End of generation: return the rest (incomplete bytes become U+FFFD)."""
        if self._stopped:
            return ""
        self._text += self._decoder.decode(b"", final=True)
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> str:
        text, start = self._text, self._emitted
        # Held-back text covers any partial stop string, so a match starts at or after `start`.
        first = -1
        for stop in self._stops:
            index = text.find(stop, start)
            if index != -1 and (first == -1 or index < first):
                first = index
        if first != -1:
            self._stopped = True
            self._text = text[:first]
            self._emitted = first
            return text[start:first]
        safe = len(text) if final else len(text) - self._partial_stop_length(text, start)
        self._emitted = safe
        return text[start:safe]

    def _partial_stop_length(self, text: str, start: int) -> int:
        """Length of the longest suffix of text[start:] that is a proper prefix of a stop."""
        longest = 0
        available = len(text) - start
        for stop in self._stops:
            for length in range(min(len(stop) - 1, available), longest, -1):
                if text.endswith(stop[:length]):
                    longest = length
                    break
        return longest
