"""Off-policy guidance for GRPO (as LUFFY, Yan et al. 2025): a group in which no sampled reply is the
row's reference reply gets the reference in place of its last reply.

GRPO learns only from groups whose replies earn different rewards. A prompt the model answers wrong
with confidence (on SST-2 from the raw SmolLM2, half the held-out misses give the right label a
probability under 0.02) yields a group of wrong replies, equal rewards and no gradient, however
often it is sampled. With the reference among them the group has a spread: the reference is
reinforced and the sampled replies pushed down. Groups that already hold the reference are left as
sampled, so a prompt the model answers right costs nothing and learns on-policy.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from finetune_kit.tasks.generation_metrics import accuracy


def guided_replies(
    replies: list[list[int]],
    references: list[str],
    group: int,
    tokenizer: PreTrainedTokenizerBase,
    end_id: int,
    max_length: int,
) -> tuple[list[list[int]], int]:
    """`replies` (token ids, `group` consecutive rows per prompt, `references` one per row) with the
    reference reply, ended by `end_id` and cut to `max_length` tokens, as the last reply of each group
    where no reply is it (the label metric's comparison: case, surrounding space and a final full stop
    aside); and the number of groups so guided."""
    guided = list(replies)
    count = 0
    for start in range(0, len(replies), group):
        reference = references[start]
        texts = tokenizer.batch_decode(replies[start : start + group], skip_special_tokens=True)
        if any(accuracy([text], [reference]) for text in texts):
            continue
        ids = tokenizer(reference, add_special_tokens=False)["input_ids"] + [end_id]
        guided[start + group - 1] = ids[:max_length]
        count += 1
    return guided, count
