"""The MLX backend's prompt cache: mlx-lm's KV cache and the tokens it holds.

After a generation the cache keeps exactly the prompt (generated tokens are trimmed), so
the next request reuses the longest prefix it shares; a cache that cannot be trimmed (a
sliding window that wrapped) is rebuilt. The backend holds its lock around every call.
"""

from __future__ import annotations

from typing import Any


class MlxPromptCache:
    """mlx-lm's prompt cache for one model (`cache`, None: none yet) and its `tokens`."""

    def __init__(self) -> None:
        self.cache: list[Any] | None = None
        self.tokens: list[int] = []

    def reuse(self, model: Any, tokens: list[int]) -> int:
        """Trim the cache to the longest prefix it shares with `tokens`; return its length.

        The prompt's last token is always evaluated (it yields the first logits). A cache
        that cannot be trimmed (e.g. a sliding window that wrapped) is rebuilt.
        """
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

        shared = 0
        limit = min(len(self.tokens), len(tokens) - 1)
        while shared < limit and self.tokens[shared] == tokens[shared]:
            shared += 1
        if self.cache is not None and shared and can_trim_prompt_cache(self.cache):
            trim_prompt_cache(self.cache, len(self.tokens) - shared)
            self.tokens = self.tokens[:shared]
            return shared
        self.cache = make_prompt_cache(model)
        self.tokens = []
        return 0

    def keep_prompt(self, tokens: list[int]) -> None:
        """After a generation keep exactly the prompt in the cache (drop generated tokens)."""
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        cache = self.cache
        if not cache or not can_trim_prompt_cache(cache):
            self.drop()
            return
        extra = int(cache[0].offset) - len(tokens)
        if extra < 0:
            self.drop()
            return
        trim_prompt_cache(cache, extra)
        self.tokens = list(tokens)

    def drop(self) -> None:
        """Forget everything: the next generation evaluates its whole prompt."""
        self.cache = None
        self.tokens = []
