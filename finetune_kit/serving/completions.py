"""Chat completions for instruction-tuned runs (sft, preference, grpo): OpenAI-style conversations through
the run's chat template, as `finetune-kit chat` formats them. Replies are decoded by the `Decoder`:
concurrent requests share forward passes, at most `max_batch` replies at a time (the KV cache's
memory is bounded by that many conversations), and a seeded reply is the same whatever else is asked."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from peft import PeftModel
from transformers import PreTrainedModel, TextIteratorStreamer

from finetune_kit.config.generation import GenerationSettings
from finetune_kit.config.recipe import Precision
from finetune_kit.errors import UserError
from finetune_kit.inference import TorchRun, with_generation_overrides
from finetune_kit.models.adapters import merged_model
from finetune_kit.serving.decoding import Decoder, Reply
from finetune_kit.serving.errors import invalid
from finetune_kit.serving.schemas import ChatRequest, FinishReason, Usage
from finetune_kit.tasks.chat_template import Message, prompt_text, stop_token_ids
from finetune_kit.training.precision import DTYPES, Resolved, resolve_precision


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


class ChatCompletions:
    """Checks requests and answers them, whole or streamed, from the run's decoder; `start` and
    `stop` run the decoder's worker for the server's lifetime."""

    def __init__(
        self,
        run: TorchRun,
        max_text_chars: int,
        max_batch: int,
        on_step: Callable[[int], None] = lambda size: None,
        on_prefill: Callable[[int], None] = lambda size: None,
        precision: Precision = "auto",
    ) -> None:
        self.tokenizer = run.tokenizer
        self.precision = decoding_precision(run, precision)
        self.decoder = Decoder(served_model(run, self.precision), max_batch, on_step, on_prefill)
        self.settings: GenerationSettings = run.recipe.generation
        self.system: str | None = run.recipe.data.system_prompt
        self.stops = stop_token_ids(run.tokenizer)
        self.context: int | None = getattr(run.model.config, "max_position_embeddings", None)
        self.max_text_chars = max_text_chars

    def start(self) -> None:
        self.decoder.start()

    def stop(self) -> None:
        self.decoder.stop()

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
        reply = self._reply(prompt)
        self.decoder.submit(reply)
        reply.done.wait()
        if reply.error is not None:
            raise reply.error
        return self._completion(prompt, reply.tokens)

    async def answer(self, prompt: Prompt) -> Completion:
        """The whole reply, awaited on the event loop: no thread waits for it. (A thread each would
        cap the replies in flight at asyncio's default pool, 6 threads on a 2-core machine, and the
        decoding batch with them.) A request cancelled while it waits retires its reply."""
        loop = asyncio.get_running_loop()
        ended = loop.create_future()
        reply = self._reply(prompt)
        reply.on_end = lambda: loop.call_soon_threadsafe(_settle, ended)
        self.decoder.submit(reply)
        try:
            await ended
        except asyncio.CancelledError:
            reply.cancelled.set()
            raise
        if reply.error is not None:
            raise reply.error
        return self._completion(prompt, reply.tokens)

    def stream(self, prompt: Prompt) -> ReplyStream:
        return ReplyStream(self, prompt)

    def _reply(self, prompt: Prompt, streamer: TextIteratorStreamer | None = None) -> Reply:
        return Reply(prompt.ids, prompt.settings, self.stops, streamer)

    def _completion(self, prompt: Prompt, new: list[int]) -> Completion:
        stopped = bool(new) and new[-1] in self.stops
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return Completion(text, len(prompt.ids), len(new), "stop" if stopped else "length")


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def decoding_precision(run: TorchRun, requested: Precision) -> Resolved:
    """The precision replies are decoded in. auto: the run's own (`training.precision`, as this machine
    resolves it), the precision its held-out replies were generated and scored in; a run trained in
    fp16 on a GPU decodes on a CPU in what the CPU runs fast. fp32 alone makes a greedy reply the same
    token for token whatever else shares its batch."""
    on_gpu = next(run.model.parameters()).device.type == "cuda"
    if requested == "fp16" and not on_gpu:
        raise UserError("--chat-precision fp16: needs a GPU; on a CPU use bf16 or fp32")
    if requested != "auto":
        return requested
    resolved = resolve_precision(run.recipe.training.precision)
    return resolve_precision("auto") if resolved == "fp16" and not on_gpu else resolved


def served_model(run: TorchRun, precision: Resolved) -> PreTrainedModel | PeftModel:
    """The run's model as it decodes fastest: a low-rank adapter folded into the base weights (an
    unmerged LoRA adds two small matmuls and a dropout to every linear layer of every decoding
    pass: twice the time per token on a CPU), the weights in `precision` (bf16 halves the bytes a
    decoding pass reads and speeds a batched pass's matmuls where the CPU has bf16 instructions).
    Prompt and prefix tuning cannot fold in; they decode as they are. The run's model is changed in
    place: the server owns it."""
    model = run.model
    if isinstance(model, PeftModel) and not model.active_peft_config.is_prompt_learning:
        run.model = model = merged_model(model, run.files.model_dir)
    return model.to(DTYPES[precision])


class ReplyStream:
    """The reply's text, piece by piece as the decoder makes its tokens (transformers'
    TextIteratorStreamer). Iterating blocks on the model, so iterate it from a worker thread;
    `completion` holds the token counts once the iteration has ended. Closing the iteration early
    (the client left) retires the reply from the batch at the next step."""

    def __init__(self, chats: ChatCompletions, prompt: Prompt) -> None:
        self.chats, self.prompt = chats, prompt
        self.completion: Completion | None = None

    def __iter__(self) -> Iterator[str]:
        streamer = TextIteratorStreamer(self.chats.tokenizer, skip_special_tokens=True)
        reply = self.chats._reply(self.prompt, streamer)
        self.chats.decoder.submit(reply)
        try:
            yield from (piece for piece in streamer if piece)
        finally:
            reply.cancelled.set()
        reply.done.wait()
        if reply.error is not None:
            raise reply.error
        self.completion = self.chats._completion(self.prompt, reply.tokens)
