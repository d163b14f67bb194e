"""Loss on the reply tokens that projects only their positions through the LM head.

A chat model's LM head is vocabulary-wide (49,152 outputs for SmolLM2): projecting every position of a
batch costs as much as a fifth of the model's forward, and its softmax and gradient more. In SFT with
the loss on replies, most positions are prompt: a one-word answer to a 70-token prompt scores 3 of
70. TRL's fused head scores only those positions where Triton runs and every position elsewhere
(CPUs included), so this trainer projects only the positions that predict a reply token.

Each row's own positions, where it can: the model's forward returns its last hidden states
(`output_hidden_states`, computing the logits of one position a row) and the output embeddings
project the scored positions of every row. That holds only where the logits are exactly the output
embeddings of the last hidden state (checked once on a probe: Gemma 2's soft-capping or Granite's
scaling are not) and where the head can run outside the model's forward (not under FSDP or ZeRO-3,
which gather sharded weights only inside it). Elsewhere the model's forward projects, through its
public `logits_to_keep`, the union of the rows' reply positions: on packed rows of mixed data that
union covers most positions of a batch of eight (a quarter of positions predict a reply in each
row, spread over it), which is why it is the fallback and not the rule.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional
from transformers import Trainer

from finetune_kit.tasks.common import IGNORE_INDEX

DENSE_SHARE = 0.5  # when replies cover more positions than this, TRL's chunked head (no full logits) is used
PROBE_TOKENS = 8


class ReplyLogitsLoss(Trainer):
    """A Trainer mixin whose training and evaluation loss projects only the positions that predict a
    reply token: each row's own where the head can be applied on its own, the union over the batch's
    rows through the model's forward elsewhere."""

    _plain_head: bool | None = None  # whether the logits are the output embeddings of the last hidden state

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        if return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        targets = inputs["labels"][:, 1:]  # position p predicts token p + 1
        scored = targets != IGNORE_INDEX
        features = {key: value for key, value in inputs.items() if key != "labels"}
        if self._head_runs_alone(model) and 0 < scored.sum() <= DENSE_SHARE * scored.numel():
            outputs = model(**features, use_cache=False, output_hidden_states=True, logits_to_keep=1)
            head = self.accelerator.unwrap_model(model).get_output_embeddings()
            logits, chosen = head(outputs.hidden_states[-1][:, :-1][scored]), targets[scored]
        else:
            kept = scored.any(dim=0).nonzero().squeeze(1)
            if not 0 < kept.numel() <= DENSE_SHARE * targets.size(1):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            logits = model(**features, use_cache=False, logits_to_keep=kept).logits.flatten(0, 1)
            chosen = targets[:, kept].flatten()
        loss = functional.cross_entropy(logits.float(), chosen, ignore_index=IGNORE_INDEX, reduction="sum")
        count = scored.sum() if num_items_in_batch is None else num_items_in_batch
        return loss / torch.as_tensor(count).clamp(min=1)  # the count is this process's (DDP averages the rest)

    def _head_runs_alone(self, model: torch.nn.Module) -> bool:
        """Whether the output embeddings can project hidden states outside the model's forward and give
        its logits (checked once, on a probe of a few tokens)."""
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return False
        if self._plain_head is None:
            module = self.accelerator.unwrap_model(model)
            head = module.get_output_embeddings()
            probe = torch.arange(PROBE_TOKENS, device=next(module.parameters()).device)[None]
            with torch.no_grad():
                outputs = module(input_ids=probe, use_cache=False, output_hidden_states=True)
                projected = head(outputs.hidden_states[-1]) if head is not None else None
            self._plain_head = projected is not None and torch.allclose(
                projected.float(), outputs.logits.float(), rtol=1e-4, atol=1e-4
            )
        return self._plain_head
