"""The HTTP routes: /predict, /score (reward models), /v1/chat/completions, /v1/embeddings (embedding
runs) (+ /v1/models for OpenAI clients), /health and /metrics, over one `Service`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from finetune_kit.serving.completions import ChatCompletions, Prompt
from finetune_kit.serving.embeddings import TEXT
from finetune_kit.serving.errors import ApiError, error_body, inference_failed, install_error_handlers
from finetune_kit.serving.metrics import RequestMetrics, ServerMetrics
from finetune_kit.serving.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    EmbeddingList,
    EmbeddingRequest,
    PredictRequest,
    PredictResponse,
    ScoreRequest,
    ScoreResponse,
    Usage,
)
from finetune_kit.serving.service import CHAT, EMBEDDINGS, HEALTH, METRICS, MODELS, PREDICT, SCORE, Service


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title=f"finetune-kit serve: {service.name}", lifespan=lifespan)
    app.add_middleware(RequestMetrics, metrics=service.metrics)
    install_error_handlers(app, service.metrics.count_error)

    @app.get(HEALTH)
    async def health() -> dict[str, str]:
        return {"status": "ok", "run": service.name, "task": service.task, "backend": service.backend}

    @app.get(METRICS)
    def metrics() -> Response:  # a plain function: reading the energy meter blocks, so FastAPI runs it in a thread
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post(SCORE)
    async def score(request: ScoreRequest) -> ScoreResponse:
        if service.batcher is None or service.route != SCORE:
            raise ApiError(400, service.refusal(SCORE))
        rows = request.rows(service.options.max_batch_size, service.options.max_text_chars)
        try:
            return ScoreResponse(scores=[row["score"] for row in await service.batcher.predict(rows)])
        except Exception as err:
            raise inference_failed(err) from err

    @app.post(PREDICT)
    async def predict(request: PredictRequest) -> PredictResponse:
        if service.batcher is None or service.inputs is None:
            raise ApiError(400, service.refusal(PREDICT))
        rows = service.inputs.rows(request)
        try:
            return PredictResponse(predictions=await service.batcher.predict(rows))
        except Exception as err:
            raise inference_failed(err) from err

    @app.post(EMBEDDINGS)
    async def embeddings(request: EmbeddingRequest) -> EmbeddingList:
        if service.batcher is None or service.embeddings is None:
            raise ApiError(400, service.refusal(EMBEDDINGS))
        texts = service.embeddings.texts(request)
        tokens = service.embeddings.tokens(texts)
        try:
            predictions = await service.batcher.predict([{TEXT: text} for text in texts])  # shared with /predict
        except Exception as err:
            raise inference_failed(err) from err
        return service.embeddings.answer(request, service.name, [row["embedding"] for row in predictions], tokens)

    @app.get(MODELS)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": service.name, "object": "model", "owned_by": "finetune-kit"}]}

    @app.post(CHAT, response_model=None)
    async def chat_completions(request: ChatRequest) -> ChatCompletion | StreamingResponse:
        if service.chats is None:
            raise ApiError(400, service.refusal(CHAT))
        prompt = service.chats.prompt(request)
        if request.stream:
            usage = bool(request.stream_options and request.stream_options.include_usage)
            events = _events(service.chats, service.metrics, service.name, prompt, usage)
            return StreamingResponse(events, media_type="text/event-stream")
        try:
            done = await service.chats.answer(prompt)
        except Exception as err:
            raise inference_failed(err) from err
        return ChatCompletion(
            id=_completion_id(),
            created=int(time.time()),
            model=service.name,
            choices=[Choice(message=AssistantMessage(content=done.text), finish_reason=done.finish_reason)],
            usage=done.usage,
        )

    return app


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _events(chats: ChatCompletions, metrics: ServerMetrics, model: str, prompt: Prompt, usage: bool) -> Iterator[str]:
    """Server-sent events as OpenAI streams them: the role, the text piece by piece, the finish
    reason (and the usage when asked), then `[DONE]`. A plain iterator: Starlette runs it in a
    worker thread, where waiting on the model blocks nobody."""
    stream = chats.stream(prompt)
    ident, created = _completion_id(), int(time.time())

    def event(data: dict[str, Any]) -> str:
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    def chunk(choice: ChunkChoice | None, totals: Usage | None = None) -> str:
        choices = [choice] if choice else []
        body = ChatCompletionChunk(id=ident, created=created, model=model, choices=choices, usage=totals)
        return event(body.model_dump(mode="json"))

    yield chunk(ChunkChoice(delta={"role": "assistant", "content": ""}))
    try:
        for piece in stream:
            yield chunk(ChunkChoice(delta={"content": piece}))
    except Exception as err:  # the answer has begun (status 200): the error goes into the stream
        failure = inference_failed(err)
        metrics.count_error(CHAT, failure.kind)
        yield event(error_body(failure.message, failure.kind))
    else:
        done = stream.completion
        yield chunk(ChunkChoice(delta={}, finish_reason=done.finish_reason))
        if usage:
            yield chunk(None, done.usage)
    yield "data: [DONE]\n\n"
