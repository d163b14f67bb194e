"""The runs API: the list, one run's files, its whole log, and its log and status live as server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import markdown
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, StreamingResponse

from finetune_kit.runs.folder import Layout
from finetune_kit.studio.catalog import FINAL_STATUSES, Catalog, RunSummary, read_json
from finetune_kit.studio.estimates import EstimateStore
from finetune_kit.studio.folders import Folders
from finetune_kit.studio.state import CatalogDep, FoldersDep

router = APIRouter()
POLL_S = 0.5  # how often an open run page's stream looks for new log lines: a step shows within a second
SAMPLES_SHOWN = 8


@router.get("/runs")
def list_runs(runs: CatalogDep) -> dict[str, Any]:
    return {"runs": [summary.to_dict() for summary in runs.runs()]}


@router.get("/runs/{run_id:path}/log")
def run_log(run_id: str, where: FoldersDep) -> dict[str, Any]:
    return {"entries": _log_entries(where.live_folder(run_id) / Layout.LOG, 0)[0]}


@router.get("/runs/{run_id:path}/events")
async def run_events(
    run_id: str, request: Request, where: FoldersDep, runs: CatalogDep, after: int = 0
) -> StreamingResponse:
    where.live_folder(run_id)  # 404 now, not inside the stream
    return StreamingResponse(
        _events(run_id, after, request, where, runs),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/runs/{run_id:path}/training_curve.png")
def training_curve(run_id: str, where: FoldersDep) -> FileResponse:
    """The curve image the model card links to (the only file of a run served as it is)."""
    image = where.live_folder(run_id) / Layout.CURVE_IMAGE
    if not image.is_file():
        raise HTTPException(404, f"run {run_id} has no {Layout.CURVE_IMAGE}")
    return FileResponse(image, media_type="image/png")


@router.get("/runs/{run_id:path}")
def run_detail(run_id: str, where: FoldersDep, runs: CatalogDep) -> dict[str, Any]:
    folder = where.live_folder(run_id)
    summary = runs.summary(folder)
    metrics = read_json(folder / Layout.METRICS)
    return {
        "summary": summary.to_dict(),
        "recipe": (folder / Layout.RECIPE).read_text(encoding="utf-8"),
        "metrics": metrics,
        "emissions": read_json(folder / Layout.EMISSIONS),
        "estimate": _estimate(folder, metrics, where, run_id),
        "card_html": _card_html(folder / Layout.CARD, f"/api/runs/{run_id}/"),
        "samples": _samples(metrics or {}),
    }


def _estimate(folder: Path, metrics: dict[str, Any] | None, where: Folders, run_id: str) -> dict[str, Any] | None:
    """A budgeted run's own estimate, else the one the studio made before starting it."""
    if metrics and metrics.get("estimate"):
        return metrics["estimate"]
    if saved := read_json(folder / Layout.ESTIMATE):
        return saved
    root = where.runs[int(run_id.split("/", 1)[0])]
    return EstimateStore(root).load(where.run_path(run_id), root)


def _card_html(card: Path, run_url: str) -> str | None:
    """The model card without its YAML header (the Hub shows that as tags), rendered as the Hub renders it;
    the curve image it links beside it is fetched from the run."""
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8")
    if text.startswith("---\n"):
        text = text.split("\n---\n", 1)[-1]
    text = text.replace(f"]({Layout.CURVE_IMAGE})", f"]({run_url}{Layout.CURVE_IMAGE})")
    return markdown.markdown(text, extensions=["tables", "fenced_code"])


def _samples(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Generated text a run saved: samples after causal-LM training, or replies to held-out prompts."""
    rows = metrics.get("samples") or metrics.get("replies") or []
    return [row for row in rows if isinstance(row, dict)][:SAMPLES_SHOWN]


def _log_entries(log: Path, skip: int) -> tuple[list[dict[str, Any]], int]:
    """The log's entries after the first `skip` complete lines, and how many complete lines it holds now."""
    try:
        lines = log.read_text(encoding="utf-8").split("\n")
    except OSError:
        return [], skip
    complete = lines[:-1]  # the last piece is empty, or a line still being written
    return [json.loads(line) for line in complete[skip:] if line], max(skip, len(complete))


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


async def _events(run_id: str, seen: int, request: Request, where: Folders, runs: Catalog) -> AsyncIterator[str]:
    """New log lines and status changes until the run's status is final. The run folder may move from
    `.partial` to its final name meanwhile: the id stays, and so does the count of lines already sent."""
    shown: dict[str, Any] | None = None
    while not await request.is_disconnected():
        folder = where.live_folder(run_id)
        entries, seen = _log_entries(folder / Layout.LOG, seen)
        for entry in entries:
            yield _event("log", entry)
        summary: RunSummary = runs.summary(folder)
        state = {"status": summary.status, "emissions_g": summary.emissions_g, "metric": summary.metric}
        if state != shown:
            shown = state
            yield _event("status", summary.to_dict())
        if summary.status in FINAL_STATUSES:
            return
        await asyncio.sleep(POLL_S)
