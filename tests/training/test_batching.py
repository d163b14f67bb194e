"""Length-grouped batches: every row once per epoch, little padding, batches in a new random order each epoch."""

import random
from itertools import pairwise

import pytest
from datasets import Dataset

from finetune_kit.training.batching import LengthGroupedBatches

pytestmark = pytest.mark.unit


def batches_of(rows: LengthGroupedBatches, size: int) -> list[list[int]]:
    order = list(rows.indices)
    return [order[i : i + size] for i in range(0, len(order), size)]


def test_each_epoch_is_a_shuffled_set_of_length_grouped_batches():
    rng = random.Random(0)
    lengths = [rng.randint(3, 120) for _ in range(1000)]
    rows = LengthGroupedBatches(Dataset.from_dict({"length": lengths}), batch_size=16, seed=7)

    first = batches_of(rows, 16)
    assert sorted(i for batch in first for i in batch) == list(range(1000))  # every row once
    padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in first)
    random_padding = sum(
        max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b)
        for b in [list(range(i, min(i + 16, 1000))) for i in range(0, 1000, 16)]
    )
    assert padding < random_padding / 4  # grouping removes most of the padding
    assert max(lengths[i] for i in first[0]) == max(lengths)  # the longest batch first: memory errors show at once

    # Not a long-to-short sweep: batch lengths go up and down through the epoch.
    longest = [max(lengths[i] for i in batch) for batch in first[1:-1]]
    rises = sum(b > a for a, b in pairwise(longest))
    assert 0.3 < rises / len(longest) < 0.7

    rows.set_epoch(1)
    assert batches_of(rows, 16) != first  # a new order every epoch
    rows.set_epoch(0)
    assert batches_of(rows, 16) == first  # and the same order for the same epoch (resume)
