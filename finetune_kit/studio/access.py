"""The token a studio listening beyond this machine asks for: given once (`?token=` in the URL the studio
prints), then kept in an HTTP-only cookie, or sent as `Authorization: Bearer`."""

from __future__ import annotations

import secrets

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

COOKIE = "finetune_kit_studio"


def require_token(app: FastAPI, token: str) -> None:
    @app.middleware("http")
    async def check(request: Request, call_next) -> Response:
        given = request.query_params.get("token")
        if given is not None and secrets.compare_digest(given, token):
            # The token leaves the address bar (and the history) at once; the cookie carries it from here.
            url = request.url.remove_query_params("token")
            response = RedirectResponse(str(url), status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        header = request.headers.get("authorization", "")
        sent = request.cookies.get(COOKIE) or header.removeprefix("Bearer ").strip()
        if not sent or not secrets.compare_digest(sent, token):
            return JSONResponse({"detail": "this studio asks for its token: open the address it printed"}, 401)
        return await call_next(request)
