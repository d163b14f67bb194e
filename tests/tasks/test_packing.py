"""Packing in a random order: every conversation once and whole, rows within max_length, and rows that
mix the data's kinds instead of gathering one length (one task) each."""

import pytest
from datasets import Dataset, IterableDataset

from finetune_kit.tasks.packing import pack_in_random_order

pytestmark = pytest.mark.unit


def two_tasks(count: int) -> list[dict]:
    """Alternating conversations of two tasks, told apart by their token: 50 tokens of 1, or 20 of 2."""
    rows = []
    for i in range(count):
        token, size = (1, 50) if i % 2 == 0 else (2, 20)
        rows.append({"input_ids": [token] * size, "labels": [token] * size, "extra": i})
    return rows


def conversations_of(packed: list[dict]) -> list[list[int]]:
    """Each packed row cut back into its conversations, by its seq_lengths."""
    rows = []
    for row in packed:
        start, parts = 0, []
        for length in row["seq_lengths"]:
            parts.append(row["input_ids"][start : start + length])
            start += length
        assert start == len(row["input_ids"]) == len(row["labels"])
        rows.append(parts)
    return rows


def test_every_conversation_is_packed_once_and_whole_within_max_length():
    packed = list(pack_in_random_order(Dataset.from_list(two_tasks(300)), 200, seed=0))
    assert all(len(row["input_ids"]) <= 200 for row in packed)
    pieces = [part for row in conversations_of(packed) for part in row]
    assert sorted(map(tuple, pieces)) == sorted(tuple(row["input_ids"]) for row in two_tasks(300))
    assert sum(len(row["input_ids"]) for row in packed) / (200 * len(packed)) > 0.9  # rows are nearly full


def test_rows_mix_the_tasks_like_a_random_sample():
    """Sorting by length first (best-fit decreasing) would make every row one task's: 4 x 50 or 10 x 20."""
    rows = conversations_of(list(pack_in_random_order(Dataset.from_list(two_tasks(400)), 200, seed=0)))
    mixed = [row for row in rows if len({part[0] for part in row}) == 2]
    assert len(mixed) >= 0.6 * len(rows)  # 76 % here; none when sorted by length


def test_the_order_follows_the_seed():
    data = Dataset.from_list(two_tasks(100))
    first, again, other = ([row["input_ids"] for row in pack_in_random_order(data, 200, seed)] for seed in (1, 1, 2))
    assert first == again != other


def test_a_stream_is_packed_chunk_by_chunk():
    data = two_tasks(60)
    stream = IterableDataset.from_generator(lambda: iter(data))
    packed = list(pack_in_random_order(stream, 200, seed=0))
    assert sum(len(row["seq_lengths"]) for row in packed) == 60
    assert all(len(row["input_ids"]) <= 200 for row in packed)
