"""The studio's web app: the API routes of each part, the pages, and the token check when one is set."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from finetune_kit.serving.errors import validation_message
from finetune_kit.studio import chat_routes, hub_routes, launch_routes, runs_routes
from finetune_kit.studio.access import guard
from finetune_kit.studio.catalog import Catalog
from finetune_kit.studio.folders import Folders
from finetune_kit.studio.settings import StudioSettings

STATIC = files("finetune_kit.studio") / "static"
PAGES = {
    "/": "runs.html",
    "/run": "run.html",
    "/compare": "compare.html",
    "/new": "new.html",
    "/chat": "chat.html",
    "/hub": "hub.html",
}


def create_app(settings: StudioSettings) -> FastAPI:
    app = FastAPI(title="finetune-kit studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.folders = Folders(settings.runs, settings.recipes)
    app.state.catalog = Catalog(app.state.folders)
    for module in (runs_routes, launch_routes, chat_routes, hub_routes):
        app.include_router(module.router, prefix="/api")
    for route, page in PAGES.items():
        app.add_api_route(route, _page(page), methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_exception_handler(RequestValidationError, _one_line)
    guard(app, settings)
    return app


def _page(name: str):
    path = str(STATIC / name)

    async def page() -> FileResponse:
        return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})

    return page


async def _one_line(request: Request, err: RequestValidationError) -> JSONResponse:
    """FastAPI's own validation errors in the studio's shape: one line, and the field it names."""
    field, message = validation_message(err)
    return JSONResponse({"detail": message, "error": {"field": field, "message": message}}, status_code=422)
