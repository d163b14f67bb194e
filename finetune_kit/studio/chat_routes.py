"""Chat with a finished instruction-tuned run, or with the checkpoint it started from, replies streamed as
server-sent events. Only models the studio lists can be loaded: a run id resolves inside the runs folders
and a base id must be a checkpoint one of those runs names, so no client can make the studio load an
arbitrary path or Hub model. One model stays loaded; loading another replaces it."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from finetune_kit.chat import ChatModel, Conversation, load_chat_model, stream_reply
from finetune_kit.emissions.inference import InferenceMeter
from finetune_kit.errors import UserError, first_line
from finetune_kit.inference import generated_tokens, with_generation_overrides
from finetune_kit.runs import Layout
from finetune_kit.studio.catalog import RunSummary, read_recipe
from finetune_kit.studio.sse import event, event_stream
from finetune_kit.studio.state import catalog, folders, shared

router = APIRouter()

BASE = "base:"
MAX_NEW_TOKENS = 2048  # a client cannot hold the model for an unbounded reply
WAITING = 1  # requests that may wait while a reply is generated; more are refused, not queued


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)


@dataclass(frozen=True)
class ChatTarget:
    """What `load_chat_model` opens (a run folder or a checkpoint), and a key that changes when the run
    folder is rebuilt in place, so a cached model is never an overwritten run's."""

    source: str
    key: tuple[str, float]


class _Gone(Exception):
    """The client closed the stream: the generation stops at its next piece."""


class ChatHost:
    """The loaded model, shared by every request: one load or generation at a time, one request waiting."""

    def __init__(self) -> None:
        self._turns = threading.BoundedSemaphore(1 + WAITING)
        self._lock = threading.Lock()
        self._key: tuple[str, float] | None = None
        self._chat: ChatModel | None = None

    def reserve(self) -> bool:
        return self._turns.acquire(blocking=False)

    def release(self) -> None:
        self._turns.release()

    def reply(
        self,
        target: ChatTarget,
        messages: list[dict[str, str]],
        max_new_tokens: int | None,
        write: Callable[[str], None],
    ) -> dict[str, Any]:
        """The `done` event's data, once the reply was streamed through `write`."""
        with self._lock:
            chat = self._load(target)
            if max_new_tokens is not None:
                chat = replace(
                    chat, settings=with_generation_overrides(chat.settings, {"max_new_tokens": max_new_tokens})
                )
            if chat.system and not any(m["role"] == "system" for m in messages):
                messages = Conversation(chat.system, messages).messages()
            with InferenceMeter(chat.emissions, "generated tokens") as meter:
                started = time.perf_counter()
                with meter.measuring():
                    reply = stream_reply(chat, messages, write)
                seconds = time.perf_counter() - started
                meter.add(generated_tokens(chat.tokenizer, [reply]))
        done: dict[str, Any] = {"reply": reply, "seconds": round(seconds, 2)}
        if meter.result is not None:
            done["emissions_g"] = meter.result.record.emissions_g
        return done

    def _load(self, target: ChatTarget) -> ChatModel:
        if self._chat is None or self._key != target.key:
            self._chat = self._key = None
            gc.collect()  # the old model's memory is free before the new one loads
            self._chat, self._key = load_chat_model(target.source), target.key
        return self._chat


def chat_host(request: Request) -> ChatHost:
    return shared(request, "chat_host", ChatHost)


def _chat_runs(request: Request) -> list[RunSummary]:
    return [summary for summary in catalog(request).runs() if summary.chat]


def _base_checkpoint(run_dir: Path) -> str | None:
    """The checkpoint a run's recipe starts from; None when it starts from random weights."""
    model = read_recipe(run_dir).get("model")
    if not isinstance(model, dict):
        return None
    checkpoint = model.get("checkpoint")
    return checkpoint if isinstance(checkpoint, str) and not model.get("random_init") else None


def _bases(request: Request, runs: list[RunSummary]) -> list[str]:
    paths = (folders(request).run_path(summary.id) for summary in runs)
    return list(dict.fromkeys(base for path in paths if (base := _base_checkpoint(path))))


@router.get("/chat/models")
def chat_models(request: Request) -> dict[str, Any]:
    runs = _chat_runs(request)
    listed = [
        {"id": s.id, "label": s.name if s.name == s.folder else f"{s.name} ({s.folder})", "kind": "run"} for s in runs
    ]
    listed += [{"id": BASE + base, "label": base, "kind": "base"} for base in _bases(request, runs)]
    return {"models": listed}


def _target(request: Request, ident: str) -> ChatTarget:
    """The model an id names, only among those `/chat/models` lists."""
    runs = _chat_runs(request)
    if ident.startswith(BASE):
        checkpoint = ident.removeprefix(BASE)
        if checkpoint not in _bases(request, runs):
            raise HTTPException(404, f"no run in the studio's folders starts from {checkpoint!r}")
        return ChatTarget(checkpoint, (ident, 0.0))
    path = folders(request).run_path(ident)
    if not any(summary.id == ident for summary in runs):
        raise HTTPException(404, f"run {ident!r} is not a finished run with a chat template")
    return ChatTarget(str(path), (ident, (path / Layout.RECIPE).stat().st_mtime))


@router.post("/chat")
async def chat(body: ChatRequest, request: Request) -> StreamingResponse:
    target = await run_in_threadpool(_target, request, body.model)  # reads run folders: off the event loop
    if body.messages[-1].role != "user":
        raise HTTPException(422, "messages: the last message must be the user's")
    host = chat_host(request)
    if not host.reserve():
        raise HTTPException(409, "another reply is being generated; send again when it ends")
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    gone = threading.Event()

    def send(name: str, data: dict[str, Any]) -> None:
        if gone.is_set():
            raise _Gone
        try:
            loop.call_soon_threadsafe(events.put_nowait, (name, data))
        except RuntimeError:  # the event loop closed: the server is stopping
            gone.set()
            raise _Gone from None

    def write(text: str) -> None:
        if text:  # the streamer also reports empty pieces (a token that ends no word yet)
            send("token", {"text": text})

    def work() -> None:
        messages = [message.model_dump() for message in body.messages]
        try:
            last = ("done", host.reply(target, messages, body.max_new_tokens, write))
        except _Gone:
            return
        except UserError as err:
            last = ("error", {"detail": str(err)})
        except Exception as err:  # the stream reports it in one line; the server goes on
            last = ("error", {"detail": f"chat: {first_line(err)}"})
        finally:
            host.release()
        with suppress(_Gone):
            send(*last)

    threading.Thread(target=work, name="studio-chat", daemon=True).start()

    async def stream() -> AsyncIterator[str]:
        try:
            while True:
                name, data = await events.get()
                yield event(name, data)
                if name != "token":
                    return
        finally:
            gone.set()

    return event_stream(stream())
