"""The runs API: the list, one run's files, its whole log, and its log and status live as server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, StreamingResponse
from markdown_it import MarkdownIt

from finetune_kit.runs.folder import Layout
from finetune_kit.studio.catalog import FINAL_STATUSES, Catalog, read_json, read_text
from finetune_kit.studio.estimates import EstimateStore
from finetune_kit.studio.folders import Folders, OutsideFolders
from finetune_kit.studio.sse import event, event_stream
from finetune_kit.studio.state import CatalogDep, FoldersDep

router = APIRouter()
POLL_S = 0.5  # how often an open run page's stream looks for new log lines: a step shows within a second
SAMPLES_SHOWN = 8
# CommonMark with tables, raw HTML escaped and unsafe link schemes (javascript:, data:, ...) refused: a card
# holds user text (the run's name, its dataset), and the page shows it.
CARD_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


@router.get("/runs")
def list_runs(runs: CatalogDep) -> dict[str, Any]:
    return {"runs": [summary.to_dict() for summary in runs.runs()]}


@router.get("/runs/{run_id:path}/log")
def run_log(run_id: str, where: FoldersDep) -> dict[str, Any]:
    return {"entries": LogTail(where.live_folder(run_id)).read()[0]}


@router.get("/runs/{run_id:path}/events")
async def run_events(
    run_id: str, request: Request, where: FoldersDep, runs: CatalogDep, after: int = 0
) -> StreamingResponse:
    where.live_folder(run_id)  # 404 now, not inside the stream
    return event_stream(_events(run_id, after, request, where, runs))


@router.get("/runs/{run_id:path}/training_curve.png")
def training_curve(run_id: str, where: FoldersDep) -> FileResponse:
    """The curve image the model card links to (the only file of a run served as it is)."""
    image = Folders.run_file(where.live_folder(run_id), Layout.CURVE_IMAGE)
    if image is None:
        raise HTTPException(404, f"run {run_id} has no {Layout.CURVE_IMAGE}")
    return FileResponse(image, media_type="image/png")


@router.get("/runs/{run_id:path}")
def run_detail(run_id: str, where: FoldersDep, runs: CatalogDep) -> dict[str, Any]:
    folder = where.live_folder(run_id)
    metrics = read_json(folder, Layout.METRICS)
    return {
        "summary": runs.summary(folder).to_dict(),
        "recipe": read_text(folder, Layout.RECIPE) or "",
        "metrics": metrics,
        "emissions": read_json(folder, Layout.EMISSIONS),
        "estimate": _estimate(folder, metrics, where, run_id),
        "card_html": _card_html(read_text(folder, Layout.CARD), f"/api/runs/{run_id}/"),
        "samples": _samples(metrics or {}),
    }


def _estimate(folder: Path, metrics: dict[str, Any] | None, where: Folders, run_id: str) -> dict[str, Any] | None:
    """A budgeted run's own estimate, else the one the studio made before starting it."""
    if metrics and metrics.get("estimate"):
        return metrics["estimate"]
    if saved := read_json(folder, Layout.ESTIMATE):
        return saved
    root = where.runs[int(run_id.split("/", 1)[0])]
    return EstimateStore(root).load(where.run_path(run_id), root)


def _card_html(card: str | None, run_url: str) -> str | None:
    """The model card without its YAML header (the Hub shows that as tags), rendered as the Hub renders it;
    the curve image it links beside it is fetched from the run."""
    if card is None:
        return None
    if card.startswith("---\n"):
        card = card.split("\n---\n", 1)[-1]
    card = card.replace(f"]({Layout.CURVE_IMAGE})", f"]({run_url}{Layout.CURVE_IMAGE})")
    return CARD_MARKDOWN.render(card)


def _samples(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Generated text a run saved: samples after causal-LM training, or replies to held-out prompts."""
    rows = metrics.get("samples") or metrics.get("replies") or []
    return [row for row in rows if isinstance(row, dict)][:SAMPLES_SHOWN]


class LogTail:
    """Reads a run's log from where the last read stopped (a byte offset: an open page costs what was added,
    not the whole log), complete lines only. The log may move with its folder (`.partial` to final) or be
    written anew (a resume drops the steps after its checkpoint; `--overwrite` starts over): `reset` says so."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.offset, self.lines = folder, 0, 0

    def read(self) -> tuple[list[dict[str, Any]], bool]:
        """New entries, and whether the log was written anew since the last read (start over from them)."""
        file = Folders.run_file(self.folder, Layout.LOG)
        if file is None:
            return [], False
        with file.open("rb") as handle:
            reset = handle.seek(0, 2) < self.offset
            if reset:
                self.offset = self.lines = 0
            handle.seek(self.offset)
            added = handle.read()
        complete = added[: added.rfind(b"\n") + 1]  # a line still being written waits for the next read
        self.offset += len(complete)
        entries = []
        for line in complete.decode("utf-8", errors="replace").splitlines():
            self.lines += 1
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a damaged line is skipped, not the stream
        return entries, reset

    def skip(self, count: int) -> None:
        """Start after the first `count` complete lines: those the page already has."""
        file = Folders.run_file(self.folder, Layout.LOG)
        if file is None:
            return
        with file.open("rb") as handle:
            while self.lines < count and (line := handle.readline()).endswith(b"\n"):
                self.offset += len(line)
                self.lines += 1


async def _events(run_id: str, seen: int, request: Request, where: Folders, runs: Catalog) -> AsyncIterator[str]:
    """New log lines and status changes until the run's status is final. The run folder may move from
    `.partial` to its final name meanwhile: the id stays, and so does the count of lines already sent."""
    tail: LogTail | None = None
    shown: dict[str, Any] | None = None
    while not await request.is_disconnected():
        try:
            folder = where.live_folder(run_id)
        except OutsideFolders:  # gone for a moment (replaced by --overwrite), or deleted: look again
            await asyncio.sleep(POLL_S)
            continue
        if tail is None:
            tail = LogTail(folder)
            tail.skip(seen)
        elif tail.folder != folder:  # moved into place: the same file under another name
            tail.folder = folder
        entries, reset = tail.read()
        if reset:
            yield event("reset", {})
        for entry in entries:
            yield event("log", entry)
        summary = runs.summary(folder)
        state = {"status": summary.status, "emissions_g": summary.emissions_g, "metric": summary.metric}
        if state != shown:
            shown = state
            yield event("status", summary.to_dict())
        if summary.status in FINAL_STATUSES:
            return
        await asyncio.sleep(POLL_S)
