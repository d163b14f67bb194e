"""The prefix cache: which cached tokens a prefill reuses, and which prefix it keeps afterwards."""

from __future__ import annotations

import pytest
import torch

from finetune_kit.serving.prefixes import PrefixCache, common_length

pytestmark = pytest.mark.unit


def prefilled(prompts: list[list[int]]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """A fake one-layer cache of left-padded prompts whose keys and values are the token ids, and its mask."""
    width = max(len(prompt) for prompt in prompts)
    rows = [[0] * (width - len(prompt)) + prompt for prompt in prompts]
    mask = torch.tensor([[0] * (width - len(prompt)) + [1] * len(prompt) for prompt in prompts])
    keys = torch.tensor(rows, dtype=torch.float)[:, None, :, None]  # [rows, 1 head, tokens, 1]
    return [(keys, keys.clone())], mask


def remember(cache: PrefixCache, prompts: list[list[int]]) -> None:
    layers, mask = prefilled(prompts)
    cache.remember(prompts, cache.shared(prompts), layers, mask)


def test_common_length():
    assert common_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_length([1, 2], [1, 2, 3]) == 2
    assert common_length([], [1]) == 0


def test_the_prefix_two_prompts_share_is_kept_with_its_real_tokens_keys():
    cache = PrefixCache()
    remember(cache, [[5, 6, 7, 8, 1], [5, 6, 7, 9]])  # padding before the second: its keys skip it
    assert cache.ids == [5, 6, 7]
    assert cache.layers[0][0].flatten().tolist() == [5.0, 6.0, 7.0]
    assert cache.shared([[5, 6, 7, 2, 2], [5, 6, 7, 3]]) == 3
    rows = cache.rows(3, count=2)
    assert rows[0][0].shape == (2, 1, 3, 1)


def test_a_prompt_keeps_at_least_one_token_to_prefill_and_a_stranger_shares_nothing():
    cache = PrefixCache()
    remember(cache, [[5, 6, 7, 1], [5, 6, 7, 2]])
    assert cache.shared([[5, 6, 7]]) == 2  # its last token's logits give the first reply token
    assert cache.shared([[5, 6, 7, 1], [9, 9]]) == 0


def test_one_prompt_after_another_is_compared_with_the_last_and_a_stale_prefix_is_replaced():
    cache = PrefixCache()
    remember(cache, [[5, 6, 7, 1]])
    assert cache.ids == []  # nothing to compare with yet
    remember(cache, [[5, 6, 7, 2]])
    assert cache.ids == [5, 6, 7]
    remember(cache, [[5, 6, 7, 3, 4]])
    assert cache.ids == [5, 6, 7]  # served in full: kept
    remember(cache, [[8, 8, 1]])
    remember(cache, [[8, 8, 2]])
    assert cache.ids == [8, 8]  # the traffic changed: the prefix follows it
