"""What every route reads from the app: the settings, the folders and the run catalog. Set once by `create_app`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from finetune_kit.studio.catalog import Catalog
from finetune_kit.studio.folders import Folders
from finetune_kit.studio.settings import StudioSettings


def settings(request: Request) -> StudioSettings:
    return request.app.state.settings


def folders(request: Request) -> Folders:
    return request.app.state.folders


def catalog(request: Request) -> Catalog:
    return request.app.state.catalog


SettingsDep = Annotated[StudioSettings, Depends(settings)]
FoldersDep = Annotated[Folders, Depends(folders)]
CatalogDep = Annotated[Catalog, Depends(catalog)]
