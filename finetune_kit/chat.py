"""`finetune-kit chat`: talk to an instruction-tuned run (or any chat checkpoint) through its chat
template, replies streamed as they are generated. Reads stdin line by line when it is not a
terminal, so an exchange can be scripted."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase, TextStreamer

from finetune_kit.config.generation import GenerationSettings
from finetune_kit.config.recipe import EmissionsConfig, ModelConfig
from finetune_kit.errors import ModelError
from finetune_kit.inference import open_run
from finetune_kit.models import load_pretrained_model, load_tokenizer
from finetune_kit.runs import Layout
from finetune_kit.tasks.chat_template import Message, prompt_text, stop_token_ids
from finetune_kit.tasks.generation import generating

RESET, EXIT = "/reset", "/exit"
CHAT_DEFAULTS = GenerationSettings(max_new_tokens=256)


@dataclass
class ChatModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    settings: GenerationSettings
    system: str | None = None  # the system prompt the model was trained with, if any
    emissions: EmissionsConfig = field(default_factory=EmissionsConfig)  # a run's settings: its country, ...


def load_chat_model(target: str) -> ChatModel:
    """A finished run folder (its recipe's generation settings apply) or a checkpoint: a Hub id,
    a model folder or a GGUF file."""
    folder = Path(target).expanduser()
    if (folder / Layout.RECIPE).is_file():
        run = open_run(folder)
        data = run.recipe.data
        settings = getattr(run.recipe, "generation", CHAT_DEFAULTS)
        chat = ChatModel(run.model, run.tokenizer, settings, getattr(data, "system_prompt", None), run.recipe.emissions)
    else:
        config = ModelConfig(checkpoint=target)
        tokenizer = load_tokenizer(config)
        model, _ = load_pretrained_model(AutoModelForCausalLM, config)
        chat = ChatModel(model, tokenizer, CHAT_DEFAULTS)
    if not chat.tokenizer.chat_template:
        raise ModelError(f"{target}: its tokenizer has no chat template; chat needs an instruction-tuned model")
    return chat


@dataclass
class Conversation:
    """The turns so far; `/reset` forgets them, the system prompt stays."""

    system: str | None = None
    turns: list[Message] = field(default_factory=list)

    def messages(self) -> list[Message]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.turns


def chat_loop(
    chat: ChatModel,
    conversation: Conversation,
    lines: Iterable[str],
    write: Callable[[str], None],
    measuring: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> list[str]:
    """One reply per line read, streamed through `write`; `/reset` and `/exit` are commands. Each
    reply is generated inside `measuring()` (the energy meter: not the wait for the next message).
    Returns every reply of the session (the conversation forgets them at `/reset`)."""
    replies: list[str] = []
    for line in lines:
        text = line.strip()
        if text == EXIT:
            break
        if text == RESET:
            conversation.turns.clear()
            write("(conversation reset)\n")
            continue
        if not text:
            continue
        conversation.turns.append({"role": "user", "content": text})
        with measuring():
            reply = stream_reply(chat, conversation.messages(), write)
        conversation.turns.append({"role": "assistant", "content": reply})
        replies.append(reply)
        write("\n")
    return replies


class _Forward(TextStreamer):
    """transformers' streamer, writing each finished piece of text to a callback."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, write: Callable[[str], None]) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.write, self.pieces = write, []

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.pieces.append(text)
        self.write(text)


def stream_reply(chat: ChatModel, messages: list[Message], write: Callable[[str], None]) -> str:
    """The model's reply to the conversation, written piece by piece as it is generated."""
    tokenizer = chat.tokenizer
    streamer = _Forward(tokenizer, write)
    with generating(chat.model, chat.settings.seed) as device:
        ids = tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            chat.model.generate(
                input_ids=ids["input_ids"].to(device),
                attention_mask=ids["attention_mask"].to(device),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=stop_token_ids(tokenizer),
                streamer=streamer,
                **chat.settings.generate_kwargs(),
            )
    return "".join(streamer.pieces).strip()
