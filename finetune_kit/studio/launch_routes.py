"""The launch API: the recipes and their forms, the check of a form (the CLI's), and the jobs that estimate, train
and export, started only once the check passed, and stopped by request."""

from __future__ import annotations

import os
import shlex
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from finetune_kit.config import load_recipe
from finetune_kit.errors import UserError, first_line
from finetune_kit.runs.folder import PARTIAL_SUFFIX, Layout
from finetune_kit.studio.catalog import FAILED, STOPPED, read_json
from finetune_kit.studio.folders import Folders
from finetune_kit.studio.launcher import TRAIN, Busy, Job, Jobs
from finetune_kit.studio.recipe_form import Checked, FieldError, check, recipe_form, recipe_summary
from finetune_kit.studio.state import CatalogDep, FoldersDep, shared


class FieldErrorsAnswered(APIRoute):
    """A route whose `FieldError` (from its handler or a dependency) is the 422 that names the field."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answered(request: Request) -> Response:
            try:
                return await handler(request)
            except FieldError as err:
                return JSONResponse(err.to_dict(), status_code=422)

        return answered


router = APIRouter(route_class=FieldErrorsAnswered)


def jobs(request: Request) -> Jobs:
    """The studio's job registry, made on first use; new runs and job logs go to the first runs folder."""
    return shared(request, "jobs", lambda: Jobs(request.app.state.settings.runs[0]))


JobsDep = Annotated[Jobs, Depends(jobs)]


class Launch(BaseModel):
    overrides: dict[str, Any] = Field(default_factory=dict, description="`--set` values by dotted field")


def checked(recipe_id: str, launch: Launch, where: FoldersDep) -> Checked:
    """The recipe and the form's overrides through the CLI's checks; a problem is a `FieldError` (422)."""
    return check(where.recipe_path(recipe_id), launch.overrides, where.runs, where.recipes)


CheckedDep = Annotated[Checked, Depends(checked)]


@router.get("/recipes")
def list_recipes(where: FoldersDep) -> dict[str, Any]:
    """Every `*.yaml` under the recipe folders (hidden ones skipped); one that cannot be read says why."""
    recipes = []
    for root in where.recipes:
        for file in _recipe_files(root):
            ident = where.recipe_id(file)
            recipes.append({"id": ident, "file": f"{root.name}/{ident.split('/', 1)[1]}", **recipe_summary(file)})
    return {"recipes": sorted(recipes, key=lambda recipe: recipe["id"])}


@router.get("/recipes/{recipe_id:path}")
def recipe_detail(recipe_id: str, where: FoldersDep) -> dict[str, Any]:
    return {"id": recipe_id, **recipe_form(where.recipe_path(recipe_id))}


@router.post("/recipes/{recipe_id:path}/validate")
def validate(where: FoldersDep, recipe: CheckedDep) -> dict[str, Any]:
    return {"ok": True, "run_id": where.run_id(recipe.output_dir), "output_dir": _shown(where, recipe)}


@router.post("/recipes/{recipe_id:path}/estimate", status_code=202)
def estimate(recipe_id: str, where: FoldersDep, registry: JobsDep, recipe: CheckedDep) -> dict[str, Any]:
    return registry.estimate(recipe, where.run_id(recipe.output_dir), recipe_id).to_dict()


@router.post("/recipes/{recipe_id:path}/train", status_code=202)
def train(recipe_id: str, where: FoldersDep, registry: JobsDep, recipe: CheckedDep) -> dict[str, Any]:
    try:
        return registry.train(recipe, where.run_id(recipe.output_dir), recipe_id).to_dict()
    except Busy as err:
        raise HTTPException(409, str(err)) from None


@router.get("/jobs")
def list_jobs(registry: JobsDep) -> dict[str, Any]:
    return {"jobs": [job.to_dict() for job in registry.all()]}


@router.get("/jobs/{job_id}")
def job_detail(job_id: str, registry: JobsDep) -> dict[str, Any]:
    return _job(registry, job_id).to_dict()


@router.post("/jobs/{job_id}/stop")
def stop_job(job_id: str, registry: JobsDep) -> dict[str, Any]:
    return registry.stop(_job(registry, job_id)).to_dict()


@router.post("/runs/{run_id:path}/stop")
def stop_run(run_id: str, where: FoldersDep, registry: JobsDep) -> dict[str, Any]:
    where.run_path(run_id)  # 404 outside the folders
    job = registry.running(TRAIN, run_id)
    if job is None:
        raise HTTPException(409, f"no training of run {run_id} started by this studio is running")
    return registry.stop(job).to_dict()


@router.post("/runs/{run_id:path}/resume", status_code=202)
def resume(run_id: str, where: FoldersDep, registry: JobsDep, runs: CatalogDep) -> dict[str, Any]:
    """Continue a stopped or killed run from its last checkpoint."""
    folder = where.live_folder(run_id)
    status = runs.summary(folder).status
    if status not in (STOPPED, FAILED) or not folder.name.endswith(PARTIAL_SUFFIX):
        raise HTTPException(409, f"run {run_id} is {status}; only a stopped or failed run resumes")
    _require_resumable_here(folder, where.run_path(run_id))
    try:
        return registry.resume(folder, run_id).to_dict()
    except Busy as err:
        raise HTTPException(409, str(err)) from None


@router.post("/runs/{run_id:path}/export", status_code=202)
def export(run_id: str, where: FoldersDep, registry: JobsDep) -> dict[str, Any]:
    final = where.run_path(run_id)
    if where.live_folder(run_id) != final:  # 404 when there is no such run
        raise HTTPException(409, f"run {run_id} is not finished; export a finished run")
    try:
        return registry.export(final, run_id).to_dict()
    except Busy as err:
        raise HTTPException(409, str(err)) from None


def _require_resumable_here(partial: Path, final: Path) -> None:
    """A 409 unless `train --resume`, run by the studio, continues this very run: on this machine (another one may
    still build it), and writing where it is (its saved recipe's folder, read from the studio's working directory,
    as `train` reads it, is this one: a run started from another folder would start over somewhere else)."""
    process = read_json(partial, Layout.PROCESS)
    host = process.get("host") if isinstance(process, dict) else None
    if host and host != socket.gethostname():
        raise HTTPException(409, f"this run was started on {host}; resume it there")
    saved = partial / Layout.RECIPE
    try:
        run_dir = load_recipe(saved).run_dir
    except UserError as err:
        raise HTTPException(409, f"its saved recipe does not load: {first_line(err)}") from None
    if (Path.cwd() / run_dir).resolve() == final:
        return
    command = shlex.join(["finetune-kit", "train", str(saved), "--resume"])
    parts = len(run_dir.parts)
    if not run_dir.is_absolute() and final.parts[-parts:] == run_dir.parts:  # relative to where it started
        command = f"cd {shlex.quote(str(Path(*final.parts[:-parts])))} && {command}"
    else:  # moved since: its recipe names another folder
        command = f"{command} from the folder it was started in (its recipe writes to {run_dir})"
    raise HTTPException(409, f"this run was started from another folder; continue it with: {command}")


def _job(registry: Jobs, job_id: str) -> Job:
    job = registry.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r} in this studio")
    return job


def _recipe_files(root: Path) -> list[Path]:
    """`*.yaml` files under `root`, hidden folders and files skipped, none that leads outside it."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            path = Path(folder) / name
            if name.endswith(".yaml") and not name.startswith(".") and path.resolve().is_relative_to(root):
                found.append(path)
    return found


def _shown(where: Folders, checked: Checked) -> str:
    """The run folder as the runs page shows it: inside the runs folder."""
    return where.run_id(checked.output_dir).split("/", 1)[1]
