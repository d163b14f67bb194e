"""The Hub from the studio: search models by the CO2 their cards state, and publish a finished run. The Hub
token a user enters lives in this process's memory only: it is passed to each Hub call explicitly (never put
in the environment, which the training processes the studio starts would inherit), and never returned,
logged or written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from huggingface_hub import HfApi
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from pydantic import BaseModel, Field

from finetune_kit.errors import UserError, first_line
from finetune_kit.hub.errors import HUB_ERRORS, HubError, describe_hub_error
from finetune_kit.hub.push import push_run
from finetune_kit.hub.search import search_models
from finetune_kit.studio.state import folders, shared

router = APIRouter()


@dataclass
class HubLogin:
    """The token and the user the Hub says it belongs to; the token stays out of every repr."""

    token: str | None = field(default=None, repr=False)
    user: str | None = None

    def public(self) -> dict[str, Any]:
        return {"set": self.token is not None, "user": self.user}


def hub_login(request: Request) -> HubLogin:
    return shared(request, "hub_login", HubLogin)


class TokenRequest(BaseModel):
    token: str = Field(repr=False)


class PushRequest(BaseModel):
    repo_id: str
    private: bool = False


@router.get("/hub/search")
def search(
    request: Request,
    max_co2: Annotated[float, Query(ge=0)],
    min_co2: Annotated[float, Query(ge=0)] = 0.0,
    task: str | None = None,
    author: str | None = None,
    sort: str = "downloads",
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    if min_co2 > max_co2:
        raise HTTPException(422, "min_co2: must not exceed max_co2")
    api = HfApi(token=hub_login(request).token or False)  # never a token from the environment
    try:
        found = search_models(
            max_g=max_co2,
            min_g=min_co2,
            task=task or None,
            author=author or None,
            sort=sort,
            limit=limit,
            api=api,
        )
    except HubError as err:
        raise HTTPException(502, str(err)) from None
    return found.to_dict()


@router.get("/hub/token")
def token_status(request: Request) -> dict[str, Any]:
    return hub_login(request).public()


@router.post("/hub/token")
def set_token(body: TokenRequest, request: Request) -> dict[str, Any]:
    """Kept only once the Hub accepts it, with the user name it answers for the page to show."""
    token = body.token.strip()
    if not token:
        raise HTTPException(422, "token: enter a Hub token")
    try:
        user = HfApi(token=token).whoami()["name"]
    except HUB_ERRORS as err:
        if getattr(getattr(err, "response", None), "status_code", None) == 401:
            raise HTTPException(400, "hub: the Hub rejected this token (401); check it and enter it again") from None
        raise HTTPException(502, describe_hub_error(err, "the token check")) from None
    login = hub_login(request)
    login.token, login.user = token, user
    return login.public()


@router.delete("/hub/token")
def forget_token(request: Request) -> dict[str, Any]:
    login = hub_login(request)
    login.token = login.user = None
    return login.public()


@router.post("/runs/{run_id:path}/push")
def push(run_id: str, body: PushRequest, request: Request) -> dict[str, str]:
    token = hub_login(request).token
    if token is None:
        raise HTTPException(401, "enter a Hub token first")
    if body.repo_id.count("/") != 1:
        raise HTTPException(422, "repo_id: give namespace/name, e.g. alice/sst2-minilm")
    try:
        validate_repo_id(body.repo_id)
    except HFValidationError as err:
        raise HTTPException(422, f"repo_id: {first_line(err)}") from None
    folders(request).live_folder(run_id)  # 404 unless the run exists in the studio's folders
    try:
        url = push_run(folders(request).run_path(run_id), body.repo_id, private=body.private, api=HfApi(token=token))
    except HubError as err:
        raise HTTPException(502, str(err)) from None
    except UserError as err:
        raise HTTPException(409, str(err)) from None
    return {"url": url}
