"""Text generation shared by the generative tasks: recipe settings → `model.generate`, seeded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from finetune_kit.config.generation import GenerationSettings
from finetune_kit.tasks.chat_template import Message, prompt_text, stop_token_ids


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
    ended at the template's end-of-turn token. Prompts of one group and of similar length share a
    left-padded batch: a batch runs until its longest reply ends, so one-word answers (a group's
    replies have similar lengths) are not held back by a summary's."""
    prompts = [tokenizer(prompt_text(tokenizer, c), add_special_tokens=False)["input_ids"] for c in conversations]
    group_of = groups or [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: (group_of[i], len(prompts[i])))
    stop, pad = stop_token_ids(tokenizer), tokenizer.pad_token_id
    replies = [""] * len(prompts)
    with generating(model, settings.seed) as device:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(prompts[i]) for i in chunk)
            ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in chunk], device=device)
            mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in chunk], device=device)
            with torch.no_grad():
                output = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    pad_token_id=pad,
                    eos_token_id=stop,
                    **settings.generate_kwargs(),
                )
            for i, new in zip(chunk, output[:, width:], strict=True):
                replies[i] = tokenizer.decode(new, skip_special_tokens=True).strip()
    return replies


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
