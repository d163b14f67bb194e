"""Held-out replies (`reply_texts`, which scoring, `predict` and `generate` use) decode with the
server's continuous batching: the replies are the ones each prompt gets alone, a finished reply's
slot goes to the next prompt at once, and what that loop cannot batch (beam search, a
prompt-learning adapter) still gets its replies through `model.generate`."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PrefixTuningConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune_kit.config.generation import HeldOutGeneration
from finetune_kit.tasks.chat_template import prompt_text, stop_token_ids
from finetune_kit.tasks.decoding import BatchDecoder, Reply
from finetune_kit.tasks.generation import reply_texts

pytestmark = pytest.mark.unit

QUESTIONS = [f"Sentiment of: {'a superb' if i % 2 else 'an awful'} film {'and story ' * (i % 5)}" for i in range(9)]


@pytest.fixture(scope="module")
def chat_model(tiny_chat_llama):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_chat_llama), AutoTokenizer.from_pretrained(tiny_chat_llama)


def conversations() -> list[list[dict]]:
    return [[{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": q}] for q in QUESTIONS]


def alone(model, tokenizer, conversation: list[dict], **generate_kwargs) -> str:
    """The reply `model.generate` gives one prompt on its own: no padding, no batch."""
    ids = tokenizer(prompt_text(tokenizer, conversation), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        output = model.generate(
            ids, pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_token_ids(tokenizer), **generate_kwargs
        )
    return tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).strip()


def test_batched_replies_are_the_ones_each_prompt_gets_alone(chat_model):
    model, tokenizer = chat_model
    settings = HeldOutGeneration(max_new_tokens=12)
    groups = ["b", "a", "b"] * 3  # prompts of one group decode together; replies come back in the given order
    replies = reply_texts(model, tokenizer, conversations(), settings, batch_size=4, groups=groups)
    expected = [alone(model, tokenizer, c, max_new_tokens=12, do_sample=False) for c in conversations()]
    assert replies == expected
    assert len(set(replies)) > 1  # the prompts differ in what the model says, so the order is checked


def test_a_finished_reply_gives_its_slot_to_the_next_prompt_at_once(chat_model):
    model, tokenizer = chat_model
    long, short = HeldOutGeneration(max_new_tokens=12), HeldOutGeneration(max_new_tokens=2)
    prompts = [tokenizer(prompt_text(tokenizer, c), add_special_tokens=False)["input_ids"] for c in conversations()]
    replies = [Reply(prompts[0], long, stops=[])] + [Reply(p, short, stops=[]) for p in prompts[1:7]]
    steps: list[int] = []
    BatchDecoder(model, max_batch=2, on_step=steps.append).decode(replies)
    assert [len(reply.tokens) for reply in replies] == [12] + [2] * 6
    # The long reply's 11 steps carry the six short ones beside it; batches of two that each ran until
    # their longer reply ended would have taken 11 + 1 + 1 + 1.
    assert len(steps) == 11
    assert max(steps) == 2


def test_beam_search_and_a_prefix_adapter_still_get_their_replies(chat_model):
    model, tokenizer = chat_model
    beams = HeldOutGeneration(max_new_tokens=6, num_beams=2)
    replies = reply_texts(model, tokenizer, conversations()[:3], beams, batch_size=1)
    assert replies == [alone(model, tokenizer, c, max_new_tokens=6, num_beams=2) for c in conversations()[:3]]

    prefixed = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model.name_or_path),
        PrefixTuningConfig(num_virtual_tokens=3, task_type="CAUSAL_LM"),
    )
    settings = HeldOutGeneration(max_new_tokens=6)
    replies = reply_texts(prefixed, tokenizer, conversations()[:3], settings, batch_size=1)
    assert replies == [alone(prefixed, tokenizer, c, max_new_tokens=6, do_sample=False) for c in conversations()[:3]]


def test_an_adapter_s_replies_batch_with_the_last_position_s_logits_only(chat_model):
    model, tokenizer = chat_model
    adapted = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model.name_or_path),
        LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"),
    )
    widths: list[int] = []
    head = adapted.get_base_model().get_output_embeddings()
    hook = head.register_forward_hook(lambda module, args, output: widths.append(output.shape[1]))
    settings = HeldOutGeneration(max_new_tokens=4)
    replies = reply_texts(adapted, tokenizer, conversations()[:4], settings, batch_size=4)
    hook.remove()
    assert replies == [alone(adapted, tokenizer, c, max_new_tokens=4, do_sample=False) for c in conversations()[:4]]
    assert set(widths) == {1}  # the prefill projects its last position through the vocabulary, not the prompt's
