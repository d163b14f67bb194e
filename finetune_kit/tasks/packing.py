"""Packing conversations into rows of up to `max_length` tokens, none split, in a seeded random order.

TRL's best-fit-decreasing packing fills rows a little fuller, but it sorts by length first, so a row
gathers conversations of one length, which on mixed data is often one task: a step of two such rows
sees a one-word task ten times or not at all (on the instruction mix, 8 to 12 of 31 steps had no
SST-2 conversation; random batches of as many conversations had at most one such step), and that
task's held-out accuracy swung by 23 points with the seed. First-fit in a random order keeps each row
a random sample of the data, as an unpacked random batch is, and still fills 95 % of the tokens on
that mix (best-fit-decreasing: 97 %).
"""

from __future__ import annotations

import random
from itertools import chain
from typing import Any, TypeVar

from datasets import Dataset, IterableDataset

RowsT = TypeVar("RowsT", Dataset, IterableDataset)

CHUNK = 1000  # conversations packed together: bounds each map batch's work (TRL's packing takes as many)


def pack_in_random_order(rows: RowsT, max_length: int, seed: int) -> RowsT:
    """Rows of `input_ids`, `labels`, `seq_lengths` (each conversation's length, in order) and
    `length` (the row's, as unpacked rows carry it), a stream too: each chunk of CHUNK conversations
    is shuffled with a seed of its own and packed."""
    return rows.select_columns(["input_ids", "labels"]).map(
        _first_fit,
        batched=True,
        batch_size=CHUNK,
        with_indices=True,
        fn_kwargs={"max_length": max_length, "seed": seed},
    )


def _first_fit(batch: dict[str, list], indices: list[int], max_length: int, seed: int) -> dict[str, list]:
    """Each conversation, in a random order, goes into the first row with room for it (a new row
    when none has)."""
    order = list(range(len(batch["input_ids"])))
    random.Random(seed * 1_000_003 + indices[0]).shuffle(order)
    members: list[list[int]] = []
    room: list[int] = []
    for i in order:
        size = len(batch["input_ids"][i])
        row = next((r for r, left in enumerate(room) if left >= size), None)
        if row is None:
            members.append([])
            room.append(max_length)
            row = len(room) - 1
        members[row].append(i)
        room[row] -= size

    def joined(column: str) -> list[list[Any]]:
        return [list(chain.from_iterable(batch[column][i] for i in row)) for row in members]

    lengths = [[len(batch["input_ids"][i]) for i in row] for row in members]
    return {
        "input_ids": joined("input_ids"),
        "labels": joined("labels"),
        "seq_lengths": lengths,
        "length": [sum(row) for row in lengths],
    }
