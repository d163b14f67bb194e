"""The tasks that train a decoder on conversations (SFT, preference tuning): their model, tokenizer
template and replies to bare prompts."""

from __future__ import annotations

from typing import Any

from datasets import Dataset
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.data.conversations import Message
from finetune_kit.models.head import ModelHead
from finetune_kit.tasks.chat_template import attach_template
from finetune_kit.tasks.generation import reply_texts


class ChatDecoder:
    """For tasks that train a decoder on conversations (SFT, preference tuning): a causal-LM head,
    and a tokenizer that carries the recipe's chat template (`chat.template`)."""

    recipe: Any

    def model_head(self) -> ModelHead:
        return ModelHead(AutoModelForCausalLM, self.recipe.peft_task_type)

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        attach_template(tokenizer, self.recipe.chat.template)

    def conversation_for(self, prompt: str) -> list[Message]:
        """What a bare prompt becomes, as in training: the recipe's system prompt, then the user's message."""
        system = self.recipe.data.system_prompt
        return [{"role": "system", "content": system}] * bool(system) + [{"role": "user", "content": prompt}]

    def predict(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        conversations = [self.conversation_for(str(prompt)) for prompt in rows["prompt"]]
        replies = reply_texts(model, tokenizer, conversations, self.recipe.generation)
        return [{"prompt": p, "reply": r} for p, r in zip(rows["prompt"], replies, strict=True)]

    def input_columns(self) -> list[str]:
        return ["prompt"]
