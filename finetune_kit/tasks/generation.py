"""Text generation shared by the generative tasks: recipe settings → `model.generate`, seeded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from finetune_kit.config.generation import GenerationSettings
from finetune_kit.tasks.chat_template import Message, prompt_text, stop_token_ids
from finetune_kit.tasks.decoding import BatchDecoder, Reply


def generate_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    settings: GenerationSettings,
    *,
    continue_prompt: bool,
) -> list[str]:
    """One generated text per prompt. A decoder continues its prompt (`continue_prompt`: no
    end-of-text token appended; an empty prompt starts a new text); an encoder-decoder answers it."""
    with generating(model, settings.seed) as device:
        return [_generate_one(model, tokenizer, prompt, settings, continue_prompt, device) for prompt in prompts]


def reply_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[list[Message]],
    settings: GenerationSettings,
    batch_size: int = 8,
    groups: list[str] | None = None,
) -> list[str]:
    """The model's reply to each conversation, formatted with the tokenizer's chat template and
    ended at the template's end-of-turn token. Decoded as the server decodes (continuous batching,
    `finetune_kit.tasks.decoding`): `batch_size` replies at a time, a finished reply's slot taken by
    the next, so a one-word answer is not held back by a summary's. Prompts are taken by group and
    length, so those that prefill together have similar lengths. What that loop cannot decode in
    batches (beam search, prompt-learning adapters, caches with sliding-window layers) goes through
    `model.generate` in left-padded batches."""
    prompts = [tokenizer(prompt_text(tokenizer, c), add_special_tokens=False)["input_ids"] for c in conversations]
    group_of = groups or [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: (group_of[i], len(prompts[i])))
    stops = stop_token_ids(tokenizer)
    with generating(model, settings.seed):
        decoder = BatchDecoder(model, batch_size)
        if decoder.batches and settings.num_beams == 1 and not _prompt_learning(model):
            replies = [Reply(prompts[i], settings, stops) for i in order]
            decoder.decode(replies)
            new = dict(zip(order, (reply.tokens for reply in replies), strict=True))
        else:
            ordered = [prompts[i] for i in order]
            generated = _generated_in_batches(model, ordered, settings, batch_size, stops, tokenizer.pad_token_id)
            new = dict(zip(order, generated, strict=True))
    return [tokenizer.decode(new[i], skip_special_tokens=True).strip() for i in range(len(prompts))]


def _generated_in_batches(
    model: PreTrainedModel,
    prompts: list[list[int]],
    settings: GenerationSettings,
    batch_size: int,
    stops: list[int],
    pad: int,
) -> list[list[int]]:
    """`model.generate`'s new tokens for each prompt, in left-padded batches: a batch runs until its
    longest reply ends."""
    device, new = next(model.parameters()).device, []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        width = max(len(prompt) for prompt in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        with torch.no_grad():
            output = model.generate(
                input_ids=ids, attention_mask=mask, pad_token_id=pad, eos_token_id=stops, **settings.generate_kwargs()
            )
        new += output[:, width:].tolist()
    return new


def _prompt_learning(model: PreTrainedModel) -> bool:
    """Whether a PEFT adapter adds virtual tokens or a prefix to the cache (prompt tuning, prefix tuning):
    the batch decoder builds the cache itself."""
    return bool(getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False))


@contextmanager
def generating(model: PreTrainedModel, seed: int) -> Iterator[torch.device]:
    """Evaluation mode and seeded sampling in a forked RNG: generating mid-training must not reset
    the training's random stream. Yields the model's device."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        try:
            yield device
        finally:
            model.train(was_training)


def _generate_one(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    settings: GenerationSettings,
    continue_prompt: bool,
    device: torch.device,
) -> str:
    ids = tokenizer(prompt, add_special_tokens=not continue_prompt)["input_ids"]
    if not ids:
        ids = [tokenizer.eos_token_id]  # a document boundary: generate from the start of a text
    inputs = torch.tensor([ids], device=device)
    with torch.no_grad():
        output = model.generate(
            input_ids=inputs,
            attention_mask=torch.ones_like(inputs),
            pad_token_id=tokenizer.pad_token_id,
            **settings.generate_kwargs(),
        )
    new = output[0, inputs.shape[1] :] if continue_prompt else output[0]
    return tokenizer.decode(new, skip_special_tokens=True)


class SampleGenerations(TrainerCallback):
    """After each evaluation, writes generations for fixed prompts to the run log: what the model
    has learned, readable as training goes."""

    def __init__(
        self,
        prompts: list[str],
        settings: GenerationSettings,
        write: Callable[[dict[str, Any]], None],
        continue_prompt: bool,
    ) -> None:
        self.prompts, self.settings, self.write, self.continue_prompt = prompts, settings, write, continue_prompt
        self.step: int | None = None

    def on_evaluate(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero or model is None or not self.prompts or state.global_step == self.step:
            return  # the final validation and test evaluations fall on the step already sampled
        self.step = state.global_step
        texts = generate_texts(
            model, processing_class, self.prompts, self.settings, continue_prompt=self.continue_prompt
        )
        samples = [{"prompt": p, "text": t} for p, t in zip(self.prompts, texts, strict=True)]
        self.write({"step": state.global_step, "samples": samples})
