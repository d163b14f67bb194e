"""What the runs page lists: one summary per run folder, read from the small files every run writes (metrics,
emissions, the log's last lines), never from the model. Summaries are cached by the files' modification
times, so listing hundreds of runs again costs a `stat` per file."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from finetune_kit.emissions.tracker import EmissionsRecord
from finetune_kit.runs.folder import PARTIAL_SUFFIX, Layout, RunFolder
from finetune_kit.studio.folders import Folders
from finetune_kit.tasks import TASKS

RUNNING, FINISHED, STOPPED_ON_BUDGET, STOPPED, FAILED = "running", "finished", "stopped on budget", "stopped", "failed"
FINAL_STATUSES = (FINISHED, STOPPED_ON_BUDGET, STOPPED, FAILED)
SWEEP_STUDY = "study.db"  # what makes a folder of runs a sweep (finetune_kit.sweep keeps its study there)
SEARCH_DEPTH = 2  # runs folder / sweep folder / trial
OTHER_HOST_QUIET_S = 300  # a run another machine builds counts as running while it wrote within this
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class RunSummary:
    id: str
    name: str
    folder: str
    sweep: str | None
    task: str | None
    base_model: str | None
    main_metric: str | None
    metric: float | None
    greater_is_better: bool
    emissions_g: float | None
    energy_kwh: float | None
    duration_s: float | None
    status: str
    started: float | None
    updated: float
    chat: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_folders(root: Path, depth: int = SEARCH_DEPTH) -> list[Path]:
    """Every folder under `root` holding a run's recipe, finished or partial; hidden folders are skipped."""
    found: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue  # a link is not followed: it could lead out of the runs folder
        path = Path(entry.path)
        if (path / Layout.RECIPE).is_file():
            found.append(path)
        elif depth > 1:
            found += run_folders(path, depth - 1)
    return found


def read_text(folder: Path, name: str) -> str | None:
    """A file of a run folder; None where it is missing, unreadable or a link leading out of the folder."""
    file = Folders.run_file(folder, name)
    try:
        return file.read_text(encoding="utf-8") if file else None
    except (OSError, UnicodeDecodeError):
        return None


def read_json(folder: Path, name: str) -> Any:
    try:
        return json.loads(text) if (text := read_text(folder, name)) is not None else None
    except ValueError:
        return None


def read_recipe(folder: Path) -> dict[str, Any]:
    """The run's saved recipe as plain data (empty where unreadable): read without validating, fast."""
    try:
        data = yaml.load(read_text(folder, Layout.RECIPE) or "", Loader=SafeLoader)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _last_lines(folder: Path, limit: int = 64 * 1024) -> list[dict[str, Any]]:
    """The log's last entries (its tail only: a long run's log is read in full by the run page, not here)."""
    path = Folders.run_file(folder, Layout.LOG)
    if path is None:
        return []
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - limit))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # the first, cut line of the tail, or a line being written
    return entries


def process_alive(folder: Path, updated: float) -> bool:
    """Whether the process that wrote the partial folder's process.json still builds it: on this machine, the
    same process (its pid, started when it says: a pid reused later is not it); on another machine, one that
    wrote to the folder lately (a shared file system; there is no asking the other machine)."""
    process = read_json(folder, Layout.PROCESS)
    if not isinstance(process, dict):
        return False
    if process.get("host") != socket.gethostname():
        return time.time() - updated < OTHER_HOST_QUIET_S
    try:
        started = psutil.Process(int(process["pid"])).create_time()
    except (psutil.NoSuchProcess, ValueError, KeyError):
        return False
    except psutil.AccessDenied:
        return True  # someone else's process: it exists
    return "started" not in process or abs(started - float(process["started"])) < 1.0


def _spent_so_far(folder: Path, partial: bool) -> EmissionsRecord | None:
    """What a run still being built has spent, added up as `train` adds it up at its end."""
    return RunFolder(folder.with_name(folder.name.removesuffix(PARTIAL_SUFFIX))).total_emissions() if partial else None


def _has_chat_template(folder: Path) -> bool:
    if Folders.run_file(folder, f"{Layout.MODEL}/chat_template.jinja"):
        return True
    config = read_json(folder, f"{Layout.MODEL}/tokenizer_config.json")
    return isinstance(config, dict) and bool(config.get("chat_template"))


def _main_metric_name(task: str | None) -> str | None:
    """The task's metric, when it does not depend on the data (an embedding run's does: read from its metrics)."""
    name = getattr(TASKS.get(task or ""), "main_metric", None)
    return name if isinstance(name, str) else None


def _finished_metric(metrics: dict[str, Any]) -> float | None:
    main = metrics.get("main_metric")
    for split in ("validation", "test"):
        value = (metrics.get(split) or {}).get(main)
        if isinstance(value, int | float):
            return float(value)
    return None


def _logged_metric(entries: list[dict[str, Any]], main: str | None) -> float | None:
    key = f"eval_{main}"
    return next((float(e[key]) for e in reversed(entries) if isinstance(e.get(key), int | float)), None)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class Catalog:
    """The run summaries of the studio's folders, re-read only where a file changed."""

    WATCHED = (Layout.RECIPE, Layout.METRICS, Layout.EMISSIONS, Layout.LOG, Layout.STOPPED, Layout.PROCESS)

    def __init__(self, folders: Folders) -> None:
        self.folders = folders
        self._cache: dict[Path, tuple[tuple[float, ...], RunSummary]] = {}

    def runs(self) -> list[RunSummary]:
        """Every run, newest first. A run being rebuilt (`--overwrite`) shows once: its partial folder."""
        by_id: dict[str, RunSummary] = {}
        for root in self.folders.runs:
            for folder in run_folders(root):
                summary = self.summary(folder)
                if summary.id not in by_id or folder.name.endswith(PARTIAL_SUFFIX):
                    by_id[summary.id] = summary
        return sorted(by_id.values(), key=lambda s: s.started or s.updated, reverse=True)

    def summary(self, folder: Path) -> RunSummary:
        stamp = tuple(_mtime(folder / name) for name in (*self.WATCHED, Layout.EMISSION_READINGS))
        cached = self._cache.get(folder)
        partial = folder.name.endswith(PARTIAL_SUFFIX)
        if cached and cached[0] == stamp and not (partial and cached[1].status == RUNNING):
            return cached[1]
        summary = self._read(folder, partial, max(stamp))
        self._cache[folder] = (stamp, summary)
        return summary

    def _read(self, folder: Path, partial: bool, updated: float) -> RunSummary:
        """A finished run is summed up from its metrics and lineage (small JSON); its recipe is read (YAML,
        slower) only for a run still being built, or one whose lineage does not name its base model."""
        metrics = None if partial else read_json(folder, Layout.METRICS)
        lineage = read_json(folder, f"{Layout.MODEL}/{Layout.LINEAGE}") or {}
        recipe = {} if isinstance(metrics, dict) and lineage.get("base_model") else read_recipe(folder)
        task = metrics.get("task") if isinstance(metrics, dict) else recipe.get("task")
        model = recipe.get("model") or {}
        base_model = lineage.get("base_model") or model.get("checkpoint") or model.get("weights_from")
        if isinstance(metrics, dict):
            main, metric = metrics.get("main_metric"), _finished_metric(metrics)
            record = EmissionsRecord.from_dict(e) if (e := read_json(folder, Layout.EMISSIONS)) else None
            status = STOPPED_ON_BUDGET if "stopped_on_budget" in metrics else FINISHED
        else:
            main = _main_metric_name(task)
            metric, record = _logged_metric(_last_lines(folder), main), _spent_so_far(folder, partial)
            status = self._partial_status(folder, updated) if partial else FAILED
        task_class = TASKS.get(task or "")
        return RunSummary(
            id=self.folders.run_id(folder),
            name=folder.name.removesuffix(PARTIAL_SUFFIX),
            folder=self.folders.run_id(folder).split("/", 1)[1],
            sweep=folder.parent.name if (folder.parent / SWEEP_STUDY).is_file() else None,
            task=task,
            base_model=base_model,
            main_metric=main,
            metric=metric,
            greater_is_better=getattr(task_class, "greater_is_better", True),
            emissions_g=record.emissions_g if record else None,
            energy_kwh=record.energy_kwh if record else None,
            duration_s=round(record.duration_s, 1) if record else None,
            status=status,
            started=_mtime(folder / Layout.RECIPE) or None,  # the recipe is the first file a run writes
            updated=updated,
            chat=status in (FINISHED, STOPPED_ON_BUDGET) and _has_chat_template(folder),
        )

    @staticmethod
    def _partial_status(folder: Path, updated: float) -> str:
        if Folders.run_file(folder, Layout.STOPPED):
            return STOPPED
        return RUNNING if process_alive(folder, updated) else FAILED
