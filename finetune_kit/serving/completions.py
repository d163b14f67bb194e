"""Chat completions for instruction-tuned runs (sft, preference): OpenAI-style conversations through
the run's chat template, as `finetune-kit chat` formats them. One reply is generated at a time:
the model's memory stays flat under load, and a seeded reply is the same whatever else is asked."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from finetune_kit.config.generation import GenerationSettings
from finetune_kit.inference import TorchRun, with_generation_overrides
from finetune_kit.serving.errors import invalid
from finetune_kit.serving.schemas import ChatRequest, FinishReason, Usage
from finetune_kit.tasks.chat_template import Message, prompt_text, stop_token_ids
from finetune_kit.tasks.generation import generating


@dataclass(frozen=True)
class Prompt:
    """A checked request: the conversation's token ids and the generation settings it asked for."""

    ids: list[int]
    settings: GenerationSettings


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason

    @property
    def usage(self) -> Usage:
        total = self.prompt_tokens + self.completion_tokens
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens, total_tokens=total)


class _UntilCancelled(StoppingCriteria):
    """Stops generating once the client that streams the reply has gone."""

    def __init__(self, cancelled: threading.Event) -> None:
        self.cancelled = cancelled

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.cancelled.is_set(), dtype=torch.bool, device=input_ids.device)


class ChatCompletions:
    def __init__(self, run: TorchRun, max_text_chars: int) -> None:
        self.model, self.tokenizer = run.model, run.tokenizer
        self.settings: GenerationSettings = run.recipe.generation
        self.system: str | None = run.recipe.data.system_prompt
        self.stops = stop_token_ids(run.tokenizer)
        self.context: int | None = getattr(run.model.config, "max_position_embeddings", None)
        self.max_text_chars = max_text_chars
        self._one_at_a_time = threading.Lock()

    def prompt(self, request: ChatRequest) -> Prompt:
        """The request as token ids and settings, or a 400 naming the field at fault."""
        for i, message in enumerate(request.messages):
            if len(message.content) > self.max_text_chars:
                raise invalid(
                    f"messages[{i}].content",
                    f"{len(message.content)} characters; at most {self.max_text_chars} (--max-text-chars)",
                )
        last = len(request.messages) - 1
        if request.messages[last].role == "assistant":
            raise invalid(f"messages[{last}].role", "the last message is the assistant's; end with the user's message")
        messages: list[Message] = [m.model_dump() for m in request.messages]
        if self.system and all(m["role"] != "system" for m in messages):
            messages.insert(0, {"role": "system", "content": self.system})  # as in training
        settings = with_generation_overrides(
            self.settings,
            {
                "max_new_tokens": request.max_completion_tokens or request.max_tokens,
                "temperature": request.temperature,
                "top_p": request.top_p,
                "seed": secrets.randbelow(2**31) if request.seed is None else request.seed,
            },
        )
        ids = self.tokenizer(prompt_text(self.tokenizer, messages), add_special_tokens=False)["input_ids"]
        if self.context is not None and len(ids) + settings.max_new_tokens > self.context:
            raise invalid(
                "messages",
                f"the conversation is {len(ids)} tokens; with max_tokens {settings.max_new_tokens} it exceeds "
                f"the model's context of {self.context} tokens; shorten it or lower max_tokens",
            )
        return Prompt(ids, settings)

    def complete(self, prompt: Prompt) -> Completion:
        """The whole reply (blocks: call it from a worker thread)."""
        with self._one_at_a_time:
            return self._completion(prompt, self._generate(prompt))

    def stream(self, prompt: Prompt) -> ReplyStream:
        return ReplyStream(self, prompt)

    def _generate(
        self, prompt: Prompt, streamer: TextIteratorStreamer | None = None, cancelled: threading.Event | None = None
    ) -> list[int]:
        stopping = StoppingCriteriaList([_UntilCancelled(cancelled)]) if cancelled else None
        with generating(self.model, prompt.settings.seed) as device:
            ids = torch.tensor([prompt.ids], device=device)
            with torch.no_grad():
                output = self.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.stops,
                    streamer=streamer,
                    stopping_criteria=stopping,
                    **prompt.settings.generate_kwargs(),
                )
        return output[0, len(prompt.ids) :].tolist()

    def _completion(self, prompt: Prompt, new: list[int]) -> Completion:
        stopped = bool(new) and new[-1] in self.stops
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return Completion(text, len(prompt.ids), len(new), "stop" if stopped else "length")


class ReplyStream:
    """The reply's text, piece by piece as it is generated (transformers' TextIteratorStreamer, with
    generation in a thread). Iterating blocks on the model, so iterate it from a worker thread;
    `completion` holds the token counts once the iteration has ended. Closing the iteration early (the
    client left) stops the generation at its next token."""

    def __init__(self, chats: ChatCompletions, prompt: Prompt) -> None:
        self.chats, self.prompt = chats, prompt
        self.completion: Completion | None = None

    def __iter__(self) -> Iterator[str]:
        chats = self.chats
        streamer = TextIteratorStreamer(chats.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancelled, outcome = threading.Event(), {}

        def generate() -> None:
            try:
                outcome["ids"] = chats._generate(self.prompt, streamer, cancelled)
            except Exception as err:
                outcome["error"] = err
                streamer.end()  # the reader waits for the end of the text: give it one

        with chats._one_at_a_time:
            worker = threading.Thread(target=generate, name="finetune-kit-generate", daemon=True)
            worker.start()
            try:
                yield from (piece for piece in streamer if piece)
            finally:
                cancelled.set()
                worker.join()
        if "error" in outcome:
            raise outcome["error"]
        self.completion = chats._completion(self.prompt, outcome["ids"])
