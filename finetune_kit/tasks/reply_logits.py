"""Loss on the reply tokens that projects only their positions through the LM head.

A chat model's LM head is vocabulary-wide (49,152 outputs for SmolLM2): projecting every position of a
batch costs as much as a fifth of the model's forward, and its softmax and gradient more. In SFT with
the loss on replies, most positions are prompt: a one-word answer to a 70-token prompt scores 3 of
70. TRL's fused head scores only those positions where Triton runs and every position elsewhere
(CPUs included), so this trainer asks the model itself for the logits of the scored positions, through
its public `logits_to_keep` argument: the model's own forward (DDP and PEFT wrappers see the call as
usual), a vocabulary-wide projection only where a reply token is predicted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional
from transformers import Trainer

from finetune_kit.tasks.common import IGNORE_INDEX

DENSE_SHARE = 0.5  # when replies cover more positions than this, TRL's chunked head (no full logits) is used


class ReplyLogitsLoss(Trainer):
    """A Trainer mixin whose training and evaluation loss projects only the positions that predict a
    reply token: the union over the batch's rows, so one index list serves every row."""

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        targets = inputs["labels"][:, 1:]  # position p predicts token p + 1
        scored = targets != IGNORE_INDEX
        kept = scored.any(dim=0).nonzero().squeeze(1)
        if return_outputs or not 0 < kept.numel() <= DENSE_SHARE * targets.size(1):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        features = {key: value for key, value in inputs.items() if key != "labels"}
        logits = model(**features, use_cache=False, logits_to_keep=kept).logits
        loss = functional.cross_entropy(
            logits.float().flatten(0, 1), targets[:, kept].flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        count = scored.sum() if num_items_in_batch is None else num_items_in_batch
        return loss / torch.as_tensor(count).clamp(min=1)  # the count is this process's (DDP averages the rest)
