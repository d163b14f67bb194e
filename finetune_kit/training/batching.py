"""Length-grouped batches in random order: the padding savings of grouping without its
long-to-short sweeps, which end every mega-batch on a run of the shortest rows."""

from __future__ import annotations

import torch
from datasets import Dataset
from torch.utils.data import Subset
from transformers.trainer_pt_utils import get_length_grouped_indices


class LengthGroupedBatches(Subset):
    """The training rows ordered so that each run of `batch_size` rows has similar lengths and the
    runs come in random order, drawn anew each epoch (accelerate calls `set_epoch` on a dataset
    that has one). Train it with `train_sampling_strategy="sequential"`."""

    def __init__(self, rows: Dataset, batch_size: int, seed: int) -> None:
        super().__init__(rows, [])
        self.lengths = rows["length"] if "length" in rows.column_names else [len(ids) for ids in rows["input_ids"]]
        self.batch_size = batch_size
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        self.indices = shuffled_length_groups(self.lengths, self.batch_size, generator)


def shuffled_length_groups(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[int]:
    """transformers' grouping (rows shuffled, then sorted by length within mega-batches of 50
    batches), with the batches shuffled. Two batches keep their place: the one holding the longest
    row stays first (out-of-memory shows at once), a short last one stays last (every other is whole)."""
    grouped = get_length_grouped_indices(lengths, batch_size, generator=generator)
    batches = [grouped[start : start + batch_size] for start in range(0, len(grouped), batch_size)]
    first = [batches.pop(0)]
    last = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [index for batch in [*first, *(batches[i] for i in order), *last] for index in batch]
