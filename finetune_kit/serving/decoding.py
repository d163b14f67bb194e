"""Continuous batching of chat replies: one worker thread owns the model and decodes every active
reply in one forward pass per token, so concurrent requests share the model's passes instead of
queueing for it.

The replies that arrive by a step boundary are prefilled together, in one pass: their prompts
left-padded to the longest, with an attention mask that hides the padding and position ids that
count each row's own tokens (requests that arrive together cost one pass, not one each). Only the
last position's logits are computed: the prompt's others are never read, and the output layer is a
fifth of a small model's work. The prefilled rows then join the batch: the KV caches are left-padded
to the longer of the two and stacked. A reply leaves the batch when it ends (a stop token, its
max_tokens) or its client has gone. At most `max_batch` replies decode together; later ones wait
for a free slot, so the KV cache's memory is bounded by `max_batch` conversations.

Each reply samples with its own settings and its own seeded `torch.Generator`: in fp32, what else is
in the batch changes neither its seeded nor its greedy tokens (beyond float rounding; in bf16 the
rounding can tip a near tie: see docs/serving.md).
Batching needs a cache of full-attention layers (llama, qwen2, gpt2, ...); a model with sliding-window
or other layers decodes one reply at a time through the same loop."""

from __future__ import annotations

import inspect
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.nn.functional import pad
from transformers import (
    DynamicCache,
    LogitsProcessorList,
    PreTrainedModel,
    TemperatureLogitsWarper,
    TextIteratorStreamer,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.cache_utils import DynamicLayer

from finetune_kit.config.generation import GenerationSettings
from finetune_kit.serving.prefixes import PrefixCache


@dataclass(eq=False)
class Reply:
    """One request's reply as it is decoded: its tokens, and how it ended (`done` is set, and `on_end`
    called, then). `streamer`, when given, receives each token as it comes; `cancelled` retires the
    reply at the next step (its client has gone)."""

    prompt: list[int]
    settings: GenerationSettings
    stops: list[int]
    streamer: TextIteratorStreamer | None = None
    on_end: Callable[[], None] | None = None  # told when the reply ends (from the decoder's thread)
    tokens: list[int] = field(default_factory=list)
    error: Exception | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        stopped = bool(self.tokens) and self.tokens[-1] in self.stops
        return stopped or len(self.tokens) >= self.settings.max_new_tokens or self.cancelled.is_set()

    def add(self, token: int) -> None:
        self.tokens.append(token)
        if self.streamer is not None:
            self.streamer.put(torch.tensor([token]))

    def end(self, error: Exception | None = None) -> None:
        self.error = error
        if self.streamer is not None:
            self.streamer.end()
        self.done.set()
        if self.on_end is not None:
            self.on_end()


class _Sampler:
    """A reply's next token from its logits: greedy at temperature 0, otherwise temperature, top-k
    and top-p (transformers' warpers, in `generate`'s order) and a draw from its own generator."""

    def __init__(self, settings: GenerationSettings, device: torch.device) -> None:
        self.greedy = settings.temperature == 0
        self.warpers = LogitsProcessorList()
        if not self.greedy:
            self.warpers.append(TemperatureLogitsWarper(settings.temperature))
            if settings.top_k:
                self.warpers.append(TopKLogitsWarper(settings.top_k))
            if settings.top_p < 1:
                self.warpers.append(TopPLogitsWarper(settings.top_p))
        self.generator = torch.Generator(device).manual_seed(settings.seed)

    def __call__(self, reply: Reply, logits: torch.Tensor) -> int:
        """The reply's next token (after its prompt and its tokens so far)."""
        if self.greedy:
            return int(logits.argmax())
        ids = torch.tensor([reply.prompt + reply.tokens], device=logits.device)
        scores = self.warpers(ids, logits[None].float())
        return int(torch.multinomial(scores.softmax(-1), 1, generator=self.generator))


@dataclass
class _Batch:
    """The replies decoding together, row by row: their shared KV cache (left-padded) and the mask of
    real tokens in it. Each row feeds its reply's last token next."""

    replies: list[Reply] = field(default_factory=list)
    samplers: list[_Sampler] = field(default_factory=list)
    cache: DynamicCache | None = None
    mask: torch.Tensor | None = None  # [rows, cached tokens]: 1 for a real token, 0 for padding


class Decoder:
    """Owns the model in one worker thread; `submit` hands it a reply to decode. `on_step` is told
    the number of replies in each decoding forward pass, `on_prefill` the number of prompts in each
    prefill."""

    def __init__(
        self,
        model: PreTrainedModel,
        max_batch: int,
        on_step: Callable[[int], None],
        on_prefill: Callable[[int], None] = lambda size: None,
    ) -> None:
        self.model, self.on_step, self.on_prefill = model, on_step, on_prefill
        self.device = next(model.parameters()).device
        full_attention = all(type(layer) is DynamicLayer for layer in self._empty_cache().layers)
        self.max_batch = max_batch if full_attention else 1
        self._prefixes = PrefixCache() if full_attention else None  # the prompts' shared beginning, prefilled once
        self._takes_logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._arrivals: queue.Queue[Reply | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    def start(self) -> None:
        self._worker = threading.Thread(target=self._serve_forever, name="finetune-kit-decode", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._arrivals.put(None)
            self._worker.join()
            self._worker = None

    def submit(self, reply: Reply) -> None:
        self._arrivals.put(reply)

    def _empty_cache(self) -> DynamicCache:
        return DynamicCache(config=self.model.config)

    def _last_logits(self, width: int) -> dict[str, torch.Tensor]:
        """Logits for the last of `width` positions only, where the model can (a prompt's others are
        never read). As an index, not the count 1: the slice a count makes of a prompt's hidden states
        is not contiguous, and a bf16 matmul then first copies the whole output layer (49k x 576 for
        SmolLM2) for every prefill: a third of a short prompt's prefill time."""
        return {"logits_to_keep": torch.tensor([width - 1], device=self.device)} if self._takes_logits_to_keep else {}

    def _serve_forever(self) -> None:
        self.model.eval()
        batch = _Batch()
        with torch.inference_mode():
            while True:
                arrivals = self._arrivals_for(batch)
                if arrivals is None:
                    for reply in batch.replies:
                        reply.end(RuntimeError("the server stopped"))
                    return
                try:
                    self._join(batch, arrivals)
                    if batch.replies:
                        self._step(batch)
                except Exception as err:  # the model failed: the replies in flight fail, the next ones start afresh
                    for reply in [*batch.replies, *arrivals]:
                        if not reply.done.is_set():
                            reply.end(err)
                    batch = _Batch()

    def _arrivals_for(self, batch: _Batch) -> list[Reply] | None:
        """The replies that join at this step boundary: waits for one when nothing decodes, takes
        only what already waits otherwise, up to the free slots. None: the decoder is stopping."""
        arrivals: list[Reply] = []
        while len(batch.replies) + len(arrivals) < self.max_batch:
            try:
                reply = self._arrivals.get(block=not batch.replies and not arrivals)
            except queue.Empty:
                break
            if reply is None:
                for waiting in arrivals:
                    waiting.end(RuntimeError("the server stopped"))
                return None
            arrivals.append(reply)
        return arrivals

    def _join(self, batch: _Batch, arrivals: list[Reply]) -> None:
        """Prefills the arrivals' prompts in one pass (after the beginning they share with the cached
        prefix: the padding sits between the two, hidden by the mask), takes each one's first token and
        stacks the rows that go on under the batch's, both caches left-padded to the longer of the two."""
        for reply in arrivals:
            if reply.cancelled.is_set():
                reply.end()
        joining = [reply for reply in arrivals if not reply.done.is_set()]
        if not joining:
            return
        prompts = [reply.prompt for reply in joining]
        shared = self._prefixes.shared(prompts) if self._prefixes else 0
        suffixes = [prompt[shared:] for prompt in prompts]
        width = max(len(suffix) for suffix in suffixes)
        ids = torch.tensor([[0] * (width - len(s)) + s for s in suffixes], device=self.device)
        mask = torch.tensor(
            [[1] * shared + [0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=self.device
        )
        if self._prefixes and shared:
            cache = DynamicCache(self._prefixes.rows(shared, len(prompts)))
        else:
            cache = self._empty_cache()
        self.on_prefill(len(prompts))
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(dim=1) - 1).clamp(min=0)[:, shared:],
            cache=cache,
            use_cache=True,
            **self._last_logits(width),
        )
        if self._prefixes:
            self._prefixes.remember(prompts, shared, _tensors(out.cache), mask)
        samplers = [_Sampler(reply.settings, self.device) for reply in joining]
        for row, (reply, sampler) in enumerate(zip(joining, samplers, strict=True)):
            reply.add(sampler(reply, out.logits[row, -1]))
        joined = _Batch(joining, samplers, out.cache, mask)
        self._retire(joined)
        if not joined.replies:
            return
        if batch.cache is None:
            batch.replies, batch.samplers, batch.cache, batch.mask = (
                joined.replies,
                joined.samplers,
                joined.cache,
                joined.mask,
            )
            return
        assert batch.mask is not None and joined.cache is not None and joined.mask is not None
        width = max(batch.mask.shape[1], joined.mask.shape[1])
        batch.cache = _stacked(batch.cache, joined.cache, width)
        batch.mask = torch.cat([_left_pad(batch.mask, width, dim=1), _left_pad(joined.mask, width, dim=1)])
        batch.replies += joined.replies
        batch.samplers += joined.samplers

    def _step(self, batch: _Batch) -> None:
        """One token for every reply in one forward pass, then the finished ones leave."""
        assert batch.mask is not None
        positions = batch.mask.sum(dim=1, keepdim=True)  # each row's real tokens so far: the next one's position
        batch.mask = torch.cat([batch.mask, torch.ones_like(batch.mask[:, :1])], dim=1)
        self.on_step(len(batch.replies))
        out = self.model(
            input_ids=torch.tensor([reply.tokens[-1] for reply in batch.replies], device=self.device)[:, None],
            attention_mask=batch.mask,
            position_ids=positions,
            cache=batch.cache,
            use_cache=True,
            **self._last_logits(1),
        )
        batch.cache = out.cache
        for row, (reply, sampler) in enumerate(zip(batch.replies, batch.samplers, strict=True)):
            if not reply.cancelled.is_set():
                reply.add(sampler(reply, out.logits[row, -1]))
        self._retire(batch)

    def _retire(self, batch: _Batch) -> None:
        """Ends the finished replies and drops their rows, and the padding no remaining row needs."""
        keep = [row for row, reply in enumerate(batch.replies) if not reply.finished]
        for row, reply in enumerate(batch.replies):
            if row not in keep:
                reply.end()
        if len(keep) == len(batch.replies):
            return
        if not keep:
            batch.replies, batch.samplers, batch.cache, batch.mask = [], [], None, None
            return
        assert batch.mask is not None and batch.cache is not None
        mask = batch.mask[keep]
        first = int(mask.sum(dim=0).nonzero()[0])  # the first column some remaining row attends to
        batch.cache = DynamicCache([tuple(t[keep, :, first:] for t in pair) for pair in _tensors(batch.cache)])
        batch.mask = mask[:, first:]
        batch.replies = [batch.replies[row] for row in keep]
        batch.samplers = [batch.samplers[row] for row in keep]


def _tensors(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's keys and values, [rows, heads, tokens, head size]."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _stacked(top: DynamicCache, bottom: DynamicCache, width: int) -> DynamicCache:
    """`bottom`'s rows under `top`'s, both left-padded to `width` tokens."""
    layers = []
    for (top_keys, top_values), (keys, values) in zip(_tensors(top), _tensors(bottom), strict=True):
        stacked_keys = torch.cat([_left_pad(top_keys, width), _left_pad(keys, width)])
        layers.append((stacked_keys, torch.cat([_left_pad(top_values, width), _left_pad(values, width)])))
    return DynamicCache(layers)


def _left_pad(tensor: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    """Zeros before the tokens along `dim` up to `width` tokens: padding the mask hides."""
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    spec = [0, 0] * (tensor.dim() - 1 - dim) + [missing, 0]
    return pad(tensor, spec)
