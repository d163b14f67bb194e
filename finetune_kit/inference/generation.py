"""`generate` with a finished causal-LM or instruction-tuned run, and the generation settings a
command line (or a chat request) puts on top of the recipe's."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from transformers import PreTrainedTokenizerBase

from finetune_kit.config.generation import GenerationSettings
from finetune_kit.errors import DataError, ModelError
from finetune_kit.inference.torch_run import TorchRun
from finetune_kit.tasks.chat_decoder import ChatDecoder
from finetune_kit.tasks.generation import generate_texts, reply_texts


def generate(run: TorchRun, prompts: list[str], overrides: dict[str, Any]) -> list[str]:
    """For a causal-LM run, each prompt with its continuation; for an instruction-tuned run, the
    reply to each prompt, formatted with the run's chat template. The recipe's generation settings
    apply, with `overrides` on top."""
    settings = getattr(run.recipe, "generation", None)
    if settings is None or run.task.pipeline_tag != "text-generation":
        raise ModelError(
            f"{run.run_dir}: generate needs a causal-lm or sft run (this one is {run.recipe.task}); use predict"
        )
    settings = with_generation_overrides(settings, overrides)
    if isinstance(run.task, ChatDecoder):  # a chat model: the prompt goes through its template
        return reply_texts(run.model, run.tokenizer, [run.task.conversation_for(p) for p in prompts], settings)
    texts = generate_texts(run.model, run.tokenizer, prompts, settings, continue_prompt=True)
    return [prompt + text for prompt, text in zip(prompts, texts, strict=True)]


def generated_tokens(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> int:
    """How many tokens the model wrote, counted by encoding its text again: an end-of-text or
    end-of-turn token it stopped on is not in the text, so the count is at most one short per text."""
    return sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)


def continuations(run: TorchRun, prompts: list[str], texts: list[str]) -> list[str]:
    """What `generate` wrote, without the prompts a causal-LM run's texts start with."""
    if isinstance(run.task, ChatDecoder):
        return texts
    return [text[len(prompt) :] for prompt, text in zip(prompts, texts, strict=True)]


def with_generation_overrides(settings: GenerationSettings, overrides: dict[str, Any]) -> GenerationSettings:
    """Settings with command-line values (None: not given) on top, checked as the recipe's are."""
    try:
        return settings.model_validate(settings.model_dump() | {k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        problem = err.errors()[0]
        raise DataError(f"--{str(problem['loc'][0]).replace('_', '-')}: {problem['msg']}") from None
