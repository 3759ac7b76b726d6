"""Several continuations of one prompt decoded together: which tokens go in which decode.

A likelihood probe scores each of its answer options as a continuation of the same prompt.
Decoded one by one, a CPU runs the model on batches of a dozen tokens and spends much of
its time outside large matrix products. `ContinuationLayout` lays the options out as one
decode instead (backends.base.LogprobScope.sequences):

- each continuation is its own sequence of the engine, sharing the prompt's KV cells;
- only tokens whose row is read are decoded: the row at a continuation's token j gives
  the probability of its token j + 1, so its last token is never decoded, and its first
  token's probability comes from the prompt's last row;
- the layout is canonical: continuations are taken in sorted order of their tokens, each
  one's tokens in a run of consecutive rows, so the batch, and with it every value,
  depends on the set of continuations alone (not on their order, nor on what was scored
  before). Groups hold at most `sequences` continuations; a group's rows are split into
  decodes of at most `rows` tokens, in order, so a token is decoded after those before it.

llama.cpp's CPU kernels round by the batch's shape, so a token's value depends on the
layout it was decoded in (on the demo model up to 0.69 nats per token against one option
per decode: bench/bench_options.py, docs/backends.md): the layout is recorded with each
option cell (`batch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One decoded token: token `depth` of continuation `member`, at prompt + `depth`."""

    member: int  # index into the caller's list of continuations
    depth: int
    token: int


@dataclass(frozen=True)
class Group:
    """Continuations decoded together (their sequences exist at once) and their decodes."""

    members: tuple[int, ...]  # indices into the caller's list of continuations
    decodes: tuple[tuple[Row, ...], ...]  # each engine decode's rows, in batch order

    @property
    def rows(self) -> int:
        """KV cells the group adds after the prompt."""
        return sum(len(decode) for decode in self.decodes)


class ContinuationLayout:
    """The canonical decode layout of `continuations` (lists of token ids) after one prompt."""

    def __init__(
        self, continuations: Sequence[Sequence[int]], *, rows: int, sequences: int
    ) -> None:
        if rows < 1 or sequences < 1:
            raise ValueError(f"rows and sequences must be positive (got {rows}, {sequences})")
        self.continuations = [list(c) for c in continuations]
        order = sorted(range(len(self.continuations)), key=lambda i: self.continuations[i])
        # Continuations of one token need no decode: their value is the prompt row's.
        decoded = [i for i in order if len(self.continuations[i]) > 1]
        self.groups = [
            self._group(tuple(decoded[start : start + sequences]), rows)
            for start in range(0, len(decoded), sequences)
        ]

    def _group(self, members: tuple[int, ...], size: int) -> Group:
        rows = [
            Row(member, depth, self.continuations[member][depth])
            for member in members
            for depth in range(len(self.continuations[member]) - 1)
        ]
        decodes = tuple(tuple(rows[start : start + size]) for start in range(0, len(rows), size))
        return Group(members, decodes)

    @property
    def largest_group(self) -> int:
        """The most KV cells one group adds after the prompt."""
        return max((group.rows for group in self.groups), default=0)
