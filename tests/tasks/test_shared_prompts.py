"""A GRPO batch scored with each prompt computed once gives TRL's log-probabilities and gradients."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
from trl.trainer.utils import add_fused_lm_head

from finetune_kit.tasks.shared_prompts import replies_until_end, shared_prompt_generate, shared_prompt_logps

REPLIES = 4


@pytest.fixture
def lora_llama(tiny_chat_llama):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_llama)
    add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    config = LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0, init_lora_weights=False)
    return get_peft_model(model, config)


def group_batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Two prompts of different lengths (left-padded), each with four replies of different lengths
    (right-padded), laid out as TRL lays out a GRPO step: prompt rows repeated for their group."""
    generator = torch.Generator().manual_seed(1)
    prompt_length, reply_length = 9, 5
    ids, masks = [], []
    for real_prompt in (9, 6):
        prompt = torch.randint(3, vocab, (prompt_length,), generator=generator)
        prompt_mask = (torch.arange(prompt_length) >= prompt_length - real_prompt).long()
        prompt = prompt * prompt_mask  # padding id 0 left of the prompt
        for real_reply in range(2, 2 + REPLIES):
            reply = torch.randint(3, vocab, (reply_length,), generator=generator)
            reply_mask = (torch.arange(reply_length) < real_reply).long()
            ids.append(torch.cat([prompt, reply * reply_mask]))
            masks.append(torch.cat([prompt_mask, reply_mask]))
    return torch.stack(ids), torch.stack(masks), reply_length


def trl_logps(model, input_ids, attention_mask, logits_to_keep):
    """TRL GRPOTrainer's own scoring: every row's prompt and reply in one forward."""
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, :-logits_to_keep] = -100
    outputs = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
    return outputs.log_probs[:, -logits_to_keep:], outputs.entropy[:, -logits_to_keep:]


def lora_gradients(model, logps, mask) -> dict[str, torch.Tensor]:
    model.zero_grad()
    (logps * mask).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


def test_shared_prompts_give_trls_log_probabilities_entropies_and_gradients(lora_llama):
    input_ids, attention_mask, reply_length = group_batch(lora_llama.config.vocab_size)
    reply_mask = attention_mask[:, -reply_length:].float()

    expected, expected_entropy = trl_logps(lora_llama, input_ids, attention_mask, reply_length)
    expected_gradients = lora_gradients(lora_llama, expected, reply_mask)
    shared = shared_prompt_logps(lora_llama, input_ids, attention_mask, reply_length, compute_entropy=True)
    assert shared is not None, "the rows share two prompts: they must be scored with a shared prefix"
    logps, entropy = shared
    gradients = lora_gradients(lora_llama, logps, reply_mask)

    torch.testing.assert_close(logps * reply_mask, expected * reply_mask, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(entropy * reply_mask, expected_entropy * reply_mask, atol=1e-5, rtol=1e-4)
    assert gradients.keys() == expected_gradients.keys()
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected_gradients[name], atol=1e-5, rtol=1e-3, msg=name)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_chunks_that_split_a_group_or_hold_one_row_score_the_same(lora_llama, batch_size):
    input_ids, attention_mask, reply_length = group_batch(lora_llama.config.vocab_size)
    reply_mask = attention_mask[:, -reply_length:].float()
    expected, _ = trl_logps(lora_llama, input_ids, attention_mask, reply_length)
    logps, entropy = shared_prompt_logps(lora_llama, input_ids, attention_mask, reply_length, False, batch_size)
    assert entropy is None
    torch.testing.assert_close(logps * reply_mask, expected * reply_mask, atol=1e-5, rtol=1e-4)


def test_a_model_that_keeps_no_cache_is_left_to_the_plain_forward(lora_llama):
    input_ids, attention_mask, reply_length = group_batch(lora_llama.config.vocab_size)
    lora_llama.gradient_checkpointing_enable()
    lora_llama.train()
    assert shared_prompt_logps(lora_llama, input_ids, attention_mask, reply_length, False) is None


def test_sampling_with_each_prompt_prefilled_once_draws_the_same_replies(lora_llama):
    from transformers import GenerationConfig

    input_ids, attention_mask, reply_length = group_batch(lora_llama.config.vocab_size)
    prompts, prompt_mask = input_ids[:, :-reply_length], attention_mask[:, :-reply_length]
    config = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=1.0, pad_token_id=0, eos_token_id=1)
    lora_llama.eval()
    torch.manual_seed(3)
    expected = lora_llama.generate(input_ids=prompts, attention_mask=prompt_mask, generation_config=config)
    torch.manual_seed(3)
    replies = shared_prompt_generate(lora_llama, prompts, prompt_mask, config)
    torch.testing.assert_close(replies, expected, rtol=0, atol=0)


def test_a_reply_ends_at_its_first_end_token():
    generated = torch.tensor([[5, 6, 1, 7, 1], [5, 2, 6, 6, 6], [8, 8, 8, 8, 8]])
    assert replies_until_end(generated, [1, 2]) == [[5, 6, 1], [5, 2], [8, 8, 8, 8, 8]]
