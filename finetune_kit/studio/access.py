"""Who may use a studio. On loopback: pages asked for by a loopback name only (a DNS-rebinding page names its
own host), and no state-changing request from another origin (a page elsewhere posting to the studio). Beyond
loopback, a token besides: given once (`?token=` in the address the studio prints), then kept in an HTTP-only
cookie named for the port (studios on one host keep theirs apart), or sent as `Authorization: Bearer`.
Every answer forbids framing and scripts from anywhere but the studio."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from finetune_kit.studio.settings import StudioSettings, is_loopback

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


def guard(app: FastAPI, settings: StudioSettings) -> None:
    hosts = LOOPBACK_HOSTS if is_loopback(settings.host) else None
    cookie = f"finetune_kit_studio_{settings.port}"

    @app.middleware("http")
    async def check(request: Request, call_next) -> Response:
        host = request.url.hostname or ""
        if hosts is not None and host not in hosts:
            return _refuse(400, f"this studio answers as 127.0.0.1 or localhost, not {host!r}")
        origin = request.headers.get("origin")
        if request.method not in SAFE_METHODS and origin and urlsplit(origin).netloc != request.url.netloc:
            return _refuse(403, f"a request from {origin} is refused: use the studio's own pages")
        if settings.token:
            given = request.query_params.get("token")
            if given is not None and _same(given, settings.token):
                # The token leaves the address bar (and the history) at once; the cookie carries it from here.
                response = RedirectResponse(str(request.url.remove_query_params("token")), status_code=303)
                response.set_cookie(cookie, settings.token, httponly=True, samesite="strict")
                return response
            sent = request.cookies.get(cookie) or request.headers.get("authorization", "").removeprefix("Bearer ")
            if not sent or not _same(sent.strip(), settings.token):
                return _refuse(401, "this studio asks for its token: open the address it printed")
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response


def _refuse(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=SECURITY_HEADERS)
