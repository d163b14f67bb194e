"""Dynamic sampling keeps whole groups with a learning signal, as many as a step trains on, and cuts
every per-row field of TRL's batch to them."""

from __future__ import annotations

import torch

from finetune_kit.tasks.dynamic_sampling import rows_with_signal, select_rows

# six groups of two replies: groups 1, 3 and 4 have a reward spread, the others none
ADVANTAGES = torch.tensor([0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -0.5, 0.5, 0.7, -0.7, 0.0, 0.0])


def test_groups_with_a_signal_come_first_and_whole_up_to_the_step():
    assert rows_with_signal(ADVANTAGES, 2, keep_groups=2, chunks=1).tolist() == [2, 3, 6, 7]
    assert rows_with_signal(ADVANTAGES, 2, keep_groups=4, chunks=1).tolist() == [2, 3, 6, 7, 8, 9]


def test_accumulation_slices_stay_equal_and_a_step_without_signal_trains_one_group_each():
    # three groups with a signal for slices of two: one group without, the lowest-numbered, fills the last
    assert rows_with_signal(ADVANTAGES, 2, keep_groups=4, chunks=2).tolist() == [0, 1, 2, 3, 6, 7, 8, 9]
    assert rows_with_signal(torch.zeros(12), 2, keep_groups=3, chunks=1).tolist() == [0, 1]


def test_every_row_field_is_cut_and_the_prompts_left_padding_shrinks():
    batch = {
        "prompt_ids": torch.tensor([[0, 0, 5], [0, 0, 5], [0, 7, 8], [0, 7, 8]]),
        "prompt_mask": torch.tensor([[0, 0, 1], [0, 0, 1], [0, 1, 1], [0, 1, 1]]),
        "completion_ids": torch.tensor([[1, 2], [3, 0], [4, 2], [6, 2]]),
        "advantages": torch.tensor([0.0, 0.0, 1.0, -1.0]),
        "num_items_in_batch": torch.tensor(7),
        "tags": ["a", "b", "c", "d"],
    }
    kept = select_rows(batch, rows_with_signal(batch["advantages"], 2, keep_groups=1, chunks=1), total=4)
    assert kept["prompt_ids"].tolist() == [[7, 8], [7, 8]] and kept["prompt_mask"].tolist() == [[1, 1], [1, 1]]
    assert kept["completion_ids"].tolist() == [[4, 2], [6, 2]] and kept["advantages"].tolist() == [1.0, -1.0]
    assert kept["tags"] == ["c", "d"] and int(kept["num_items_in_batch"]) == 7
