"""DAPO's dynamic sampling: a GRPO step samples replies for more prompts than it trains on and keeps
the groups whose replies earned different rewards.

A group whose replies all earned the same reward has no advantage: without a KL term it gives no
gradient. Late in a run most groups are like that (the model answers a prompt the same way every
time), and a step of four prompts then learns from one or none while it still scores all four
forward and backward. A step that samples `grpo.oversample` times the prompts and trains on the
groups with a signal learns from a full batch of them for the price of the extra sampling: worth it
where scoring a group costs much more than sampling it (on SST-2's one-word replies it does not pay:
a step takes half as long again and a run without it reaches the same accuracy in the same time).
"""

from __future__ import annotations

from typing import Any

import torch


def rows_with_signal(advantages: torch.Tensor, group_size: int, keep_groups: int, chunks: int) -> torch.Tensor:
    """The rows to train on, in their order: whole groups with a nonzero advantage, at most `keep_groups`.
    TRL splits what a step trains on into `chunks` equal slices (one per accumulation pass), so the
    count is rounded up to a multiple of `chunks` with groups without signal (at least one slice each)."""
    informative = advantages.view(-1, group_size).ne(0).any(dim=1)
    order = torch.cat([informative.nonzero().flatten(), (~informative).nonzero().flatten()])
    count = min(int(informative.sum()), keep_groups)
    count = max(chunks, -(-count // chunks) * chunks)
    groups = order[:count].sort().values
    return (groups[:, None] * group_size + torch.arange(group_size, device=groups.device)).flatten()


def select_rows(batch: dict[str, Any], rows: torch.Tensor, total: int) -> dict[str, Any]:
    """The batch TRL scores and trains on, cut to `rows` of its `total`: every per-row tensor or list;
    scalars (the token count that normalises the loss) are the caller's to recompute. The prompts'
    left padding shrinks to the longest prompt kept."""
    kept = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.size(0) == total:
            kept[key] = value[rows.to(value.device)]
        elif isinstance(value, list) and len(value) == total:
            kept[key] = [value[row] for row in rows.tolist()]
        else:
            kept[key] = value
    first = int(kept["prompt_mask"].any(dim=0).int().argmax())  # the first column any kept prompt uses
    kept["prompt_ids"], kept["prompt_mask"] = kept["prompt_ids"][:, first:], kept["prompt_mask"][:, first:]
    return kept
