"""The KV cache of the prompt tokens that requests begin with alike (the chat template's opening, the
system prompt, a shared instruction), kept so that each prefill runs only what follows them. On a
CPU a prefill costs in proportion to its tokens, and a short reply is nearly all prompt: a system
prompt and an instruction are half of a one-line question's tokens.

One prefix is kept: the longest one two consecutive prompts share. It is replaced when the prompts
that arrive no longer begin with it, so a server whose traffic changes follows it, and its memory is
one prompt's cache. Reusing it changes a reply only by float rounding: its keys and values are the
ones a full prefill computes, in another pass."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # each layer's keys and values, [rows, heads, tokens, head size]


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens `a` and `b` begin with alike."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PrefixCache:
    def __init__(self) -> None:
        self.ids: list[int] = []
        self.layers: Layers = []  # [1, heads, len(ids), head size]
        self._last: list[int] = []  # the last prompt seen

    def shared(self, prompts: list[list[int]]) -> int:
        """The cached tokens every prompt begins with, leaving each at least one token to prefill (its
        logits give the first reply token)."""
        if not self.ids:
            return 0
        return min(min(common_length(prompt, self.ids), len(prompt) - 1) for prompt in prompts)

    def rows(self, shared: int, count: int) -> Layers:
        """The first `shared` cached tokens, for `count` rows (views: the cache copies them as it grows)."""
        return [
            (k[:, :, :shared].expand(count, -1, -1, -1), v[:, :, :shared].expand(count, -1, -1, -1))
            for k, v in self.layers
        ]

    def remember(self, prompts: list[list[int]], shared: int, layers: Layers, mask: torch.Tensor) -> None:
        """After a prefill of `prompts` (`layers`: its cache, `mask`: its real tokens, row by row), keeps
        the longest prefix two consecutive prompts share when it is longer than the one cached, or
        when the cached one served these prompts only in part (`shared` tokens of it)."""
        lengths = [common_length(a, b) for a, b in pairwise([self._last, *prompts])]
        self._last = prompts[-1]
        longest = max(lengths)
        if longest == 0 or (longest <= len(self.ids) and shared == len(self.ids)):
            return
        row = lengths.index(longest)
        columns = mask[row].nonzero().squeeze(1)[:longest]  # the row's real tokens, in order
        self.ids = prompts[row][:longest]
        self.layers = [(k[row : row + 1, :, columns], v[row : row + 1, :, columns]) for k, v in layers]
