"""What every route reads from the app: the settings, the folders and the run catalog. Set once by `create_app`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from finetune_kit.studio.catalog import Catalog
from finetune_kit.studio.folders import Folders
from finetune_kit.studio.settings import StudioSettings

T = TypeVar("T")
_making = threading.Lock()


def settings(request: Request) -> StudioSettings:
    return request.app.state.settings


def folders(request: Request) -> Folders:
    return request.app.state.folders


def shared(request: Request, name: str, make: Callable[[], T]) -> T:
    """The app's one `name` object (a part's own state: the job registry, the chat model, the Hub login),
    made on first use; two first requests at once still make one."""
    with _making:
        if getattr(request.app.state, name, None) is None:
            setattr(request.app.state, name, make())
        return getattr(request.app.state, name)


def catalog(request: Request) -> Catalog:
    return request.app.state.catalog


SettingsDep = Annotated[StudioSettings, Depends(settings)]
FoldersDep = Annotated[Folders, Depends(folders)]
CatalogDep = Annotated[Catalog, Depends(catalog)]
