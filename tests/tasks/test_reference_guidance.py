"""Reference guidance puts the row's reference reply into each group that holds none, as the model
would have generated it, and leaves the groups that hold it as sampled."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from finetune_kit.tasks.reference_guidance import guided_replies


@pytest.fixture
def chatml(tiny_chat_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_llama)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] + [end]

    return tokenizer, end, ids


def test_a_group_without_its_reference_gets_it_as_its_last_reply(chatml):
    tokenizer, end, ids = chatml
    replies = [ids("Positive."), ids("great"), ids("maybe"), ids("neutral"), ids("negative film"), ids("no")]
    references = ["positive"] * 3 + ["negative"] * 3
    guided, count = guided_replies(replies, references, 3, tokenizer, end, max_length=8)
    assert count == 1
    assert guided[:5] == replies[:5]  # "Positive." is the reference up to case and full stop: left as sampled
    assert guided[5] == ids("negative")
    assert tokenizer.decode(guided[5], skip_special_tokens=True) == "negative"


def test_a_reference_longer_than_a_reply_may_be_is_cut_to_the_reply_length(chatml):
    tokenizer, end, ids = chatml
    reference = "a negative film review, at length"
    guided, count = guided_replies([ids("no"), ids("yes")], [reference] * 2, 2, tokenizer, end, max_length=3)
    assert count == 1 and guided[1] == ids(reference)[:3] and end not in guided[1]
