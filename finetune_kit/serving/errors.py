"""Every error the server answers with is one line in OpenAI's shape, `{"error": {"message", "type",
"param"}}`, so OpenAI clients raise it as they would OpenAI's own, and a person reads what to fix."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from finetune_kit.errors import UserError, first_line

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"
logger = logging.getLogger("finetune_kit.serving")


class ApiError(Exception):
    """A request the server answers with an error: the status, one line, and the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = INVALID_REQUEST) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind


def invalid(param: str, problem: str) -> ApiError:
    """400 naming the request field: `texts[3]: 12000 characters; at most 10000`."""
    return ApiError(400, f"{param}: {problem}", param)


def inference_failed(err: BaseException) -> ApiError:
    """500 for a failure inside the model: logged in full, answered in one line; the server goes on."""
    logger.error("inference failed", exc_info=err)
    return ApiError(500, f"inference failed: {first_line(err)}", kind=SERVER_ERROR)


def error_body(message: str, kind: str = INVALID_REQUEST, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param}}


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as the request spells it: ("body", "messages", 0, "role") → messages[0].role."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "body"


def validation_message(err: RequestValidationError) -> tuple[str, str]:
    """The first problem of a request that did not validate, as (field, one line)."""
    problem = err.errors()[0]
    if problem["type"] == "json_invalid":
        return "body", f"body: not valid JSON ({problem.get('ctx', {}).get('error', 'JSON decode error')})"
    where = field_path(tuple(problem["loc"]))
    if where == "body":  # no body, a JSON list, or a form (curl -d without a Content-Type header)
        return where, "body: send a JSON object, with the header Content-Type: application/json"
    if problem["type"] == "missing":
        return where, f"{where}: required"
    message = problem["msg"]
    return where, f"{where}: {message[:1].lower()}{message[1:]}"


def install_error_handlers(app: FastAPI, count_error: Callable[[str, str], None]) -> None:
    """OpenAI-shaped answers for FastAPI's own errors (validation, unknown route) and ours;
    `count_error(route, type)` feeds the metrics."""

    def respond(request: Request, status: int, message: str, kind: str, param: str | None) -> JSONResponse:
        count_error(request.url.path, kind)
        return JSONResponse(error_body(message, kind, param), status_code=status)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return respond(request, err.status, err.message, err.kind, err.param)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
        param, message = validation_message(err)
        return respond(request, 400, message, INVALID_REQUEST, param)

    @app.exception_handler(UserError)
    async def user_error(request: Request, err: UserError) -> JSONResponse:
        return respond(request, 400, str(err), INVALID_REQUEST, None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {err.detail}"
        return respond(request, err.status_code, message, INVALID_REQUEST, None)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:  # Starlette logs the traceback
        return respond(request, 500, f"internal error: {first_line(err)}", SERVER_ERROR, None)
