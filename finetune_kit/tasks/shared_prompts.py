"""GRPO steps with each prompt computed once for its whole group of replies.

GRPO samples `num_generations` replies to every prompt. Through transformers, TRL prefills a copy of
the prompt for each reply, then scores each reply with a forward and backward pass over its prompt
and reply. On short-answer tasks the prompt is most of those tokens (an SST-2 prompt is ~60 tokens,
its reply 2), so a step computes the same prompt eight times, twice. Here each distinct prompt,
less its last token, runs once with its keys and values kept; the cache is repeated for the group's
rows, and only the prompt's last token and the reply run per row. In training the gradient flows
back through the shared cache: log-probabilities, gradients and sampled replies are TRL's (tests
compare them) for a fraction of the compute.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Cache, GenerationConfig, GenerationMixin
from transformers.utils import ModelOutput


def shared_prompt_logps(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    compute_entropy: bool,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Per-token log-probabilities (and entropies) of the last `logits_to_keep` tokens of each row, as
    TRL's `fused_lm_head` forward returns them, `batch_size` rows at a time; None when the prompt is
    a single token or the model keeps no cache (activation checkpointing turns it off), for the
    caller to score the rows its own way."""
    chunk = batch_size or input_ids.size(0)
    scored = []
    for start in range(0, input_ids.size(0), chunk):
        rows = slice(start, start + chunk)
        piece = _chunk_logps(model, input_ids[rows], attention_mask[rows], logits_to_keep)
        if piece is None:
            return None
        scored.append(piece)
    logps = torch.cat([piece.log_probs for piece in scored])
    return logps, torch.cat([piece.entropy for piece in scored]) if compute_entropy else None


@torch.no_grad()
def shared_prompt_generate(
    model: GenerationMixin,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    generation_config: GenerationConfig,
) -> torch.Tensor:
    """`model.generate` on left-padded prompts, each distinct prompt prefilled once for all the rows
    that repeat it: the same tokens as generating row by row (greedy decoding gives identical ids)."""
    prefix_mask = attention_mask[:, :-1]  # generate computes the last token's logits itself
    positions = (prefix_mask.cumsum(-1) - 1).masked_fill(prefix_mask == 0, 1)  # as generate numbers left-padded rows
    shared = _shared_prefix(model, input_ids[:, :-1], prefix_mask, positions)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "generation_config": generation_config}
    return model.generate(**inputs) if shared is None else model.generate(**inputs, cache=shared)


def _chunk_logps(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int
) -> ModelOutput | None:
    prefix_length = input_ids.size(1) - logits_to_keep - 1  # the prompt's last token runs with the reply
    shared = _shared_prefix(model, input_ids[:, :prefix_length], attention_mask[:, :prefix_length])
    if shared is None:
        return None
    tail = input_ids[:, prefix_length:]
    labels = tail.masked_fill(attention_mask[:, prefix_length:] == 0, -100)
    labels[:, 0] = -100  # the prompt's last token is context, not scored
    return model(input_ids=tail, attention_mask=attention_mask, cache=shared, labels=labels, fused_lm_head=True)


def _shared_prefix(
    model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor | None = None
) -> Cache | None:
    """The keys and values of each row's prefix, each distinct prefix computed once and repeated for
    the rows that share it; None for an empty prefix or a model that keeps no cache now (activation
    checkpointing in training)."""
    if ids.size(1) < 1:
        return None
    distinct, group = torch.unique(torch.cat([ids, mask], dim=1), dim=0, return_inverse=True)
    first = _first_rows(group, distinct.size(0))
    positions = None if position_ids is None else position_ids[first]
    cache = model(
        input_ids=ids[first], attention_mask=mask[first], position_ids=positions, use_cache=True, logits_to_keep=1
    ).cache
    if not isinstance(cache, Cache):
        return None
    cache.batch_select_indices(group)
    return cache


def replies_until_end(generated: torch.Tensor, end_ids: list[int]) -> list[list[int]]:
    """Each row's generated ids up to and including its first end token, as TRL keeps a reply."""
    ends = torch.isin(generated, torch.tensor(end_ids, device=generated.device)).tolist()
    return [
        row[: row_ends.index(True) + 1] if True in row_ends else row
        for row, row_ends in zip(generated.tolist(), ends, strict=True)
    ]


def _first_rows(group: torch.Tensor, groups: int) -> torch.Tensor:
    """The index of each group's first row."""
    rows = torch.arange(group.size(0), device=group.device)
    first = torch.full((groups,), group.size(0), dtype=rows.dtype, device=group.device)
    return first.scatter_reduce(0, group, rows, reduce="amin")
