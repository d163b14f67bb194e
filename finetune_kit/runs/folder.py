"""The run folder: its layout, the writer that builds it, and the reader every command uses.

A run is built under `<name>.partial/` and renamed into place only when complete, so a failed
or killed run never leaves a folder that looks finished, and `--resume` knows where to continue:
the newest complete checkpoint in `<name>.partial/checkpoints/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import psutil
import yaml

from finetune_kit.config.loading import validate_recipe
from finetune_kit.config.recipe import Recipe
from finetune_kit.emissions.tracker import EmissionsRecord, sum_processes, sum_records
from finetune_kit.errors import UserError

PARTIAL_SUFFIX = ".partial"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class Layout:
    """Names inside a run folder: the only place they are spelled out."""

    RECIPE = "recipe.yaml"
    LOG = "log.jsonl"
    METRICS = "metrics.json"
    EMISSIONS = "emissions.json"
    MODEL = "model"
    LINEAGE = "finetune_kit_lineage.json"  # inside MODEL: the Hub base model and the chain of runs behind it
    CARD = "README.md"
    CURVE_IMAGE = "training_curve.png"
    TRACKING = "tracking"  # the experiment trackers' own stores (training.report_to): tensorboard/, mlflow.db, trackio/
    SWEEP_NOTE = "sweep_note.json"  # the best trial of a sweep: the whole search's trials and grams, for its card
    # Only while the run is built:
    CHECKPOINTS = "checkpoints"
    EMISSION_READINGS = "emissions.readings"  # one file per (session, process)
    BASELINE = "baseline_metrics.json"  # metrics before training, kept until metrics.json holds them
    ESTIMATE = "estimate.json"  # a budgeted run's pre-run estimate, kept (for a resume) until metrics.json holds it
    PROCESS = "process.json"  # the process building the run: its pid and host, so readers tell running from killed
    STOPPED = "stopped.json"  # a run stopped on request (SIGTERM): its step and time; --resume continues it
    # What a published run carries next to its model files:
    RESULTS = (CARD, RECIPE, METRICS, EMISSIONS, LOG, CURVE_IMAGE)
    EVALUATIONS = "eval"  # `finetune-kit eval` results, one JSON per data file
    INFERENCE = "inference.json"  # the latest `eval`'s inference energy, for the card
    ONNX = "onnx"  # `finetune-kit export`'s default folder, read by `predict --backend onnx`


class RunFiles:
    """Read (and write) the files of a run folder, finished or still being built."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def model_dir(self) -> Path:
        return self.root / Layout.MODEL

    @property
    def card(self) -> Path:
        return self.root / Layout.CARD

    def write_json(self, name: str, data: Any) -> None:
        write_atomically(self.path(name), json.dumps(data, indent=2, sort_keys=False) + "\n")

    def read_json(self, name: str) -> Any:
        file = self.path(name)
        if not file.is_file():
            raise UserError(f"{self.root}: no {name}; not a finished run folder")
        return json.loads(file.read_text())

    def metrics(self) -> dict[str, Any]:
        return self.read_json(Layout.METRICS)

    def emissions(self) -> EmissionsRecord | None:
        """None when the run was trained with `emissions.enabled: false`."""
        file = self.path(Layout.EMISSIONS)
        return EmissionsRecord.from_dict(json.loads(file.read_text())) if file.is_file() else None

    def lineage(self) -> dict[str, Any]:
        return read_lineage(self.model_dir)

    def sweep_note(self) -> dict[str, Any]:
        """What the sweep this run won says of the whole search; empty for a run no sweep chose."""
        file = self.path(Layout.SWEEP_NOTE)
        return json.loads(file.read_text()) if file.is_file() else {}

    def inference(self) -> dict[str, Any]:
        """The inference energy the latest `eval` measured on this run; empty when none ran."""
        file = self.path(Layout.INFERENCE)
        return json.loads(file.read_text()) if file.is_file() else {}

    def log(self) -> list[dict[str, Any]]:
        file = self.path(Layout.LOG)
        return [json.loads(line) for line in file.read_text().splitlines()] if file.is_file() else []

    def result_files(self) -> list[Path]:
        """The run's own files that are published beside the model (recipe, results, card)."""
        return [self.path(name) for name in Layout.RESULTS if self.path(name).is_file()]


class FinishedRun(RunFiles):
    """A complete run folder, as `predict`, `eval`, `card`, `push`, `merge` and `emissions` read it."""

    @classmethod
    def open(cls, run_dir: Path) -> FinishedRun:
        run = cls(run_dir)
        if not run.model_dir.is_dir() or not run.path(Layout.RECIPE).is_file():
            partial = run_dir.with_name(run_dir.name + PARTIAL_SUFFIX)
            hint = f"; {partial} is an unfinished run (continue it with --resume)" if partial.exists() else ""
            raise UserError(f"{run_dir}: not a finished run folder (no {Layout.MODEL}/ or {Layout.RECIPE}){hint}")
        return run

    def recipe(self) -> Recipe:
        """The recipe the run was trained with, validated again by its task's config class."""
        saved = self.path(Layout.RECIPE)
        return validate_recipe(yaml.safe_load(saved.read_text(encoding="utf-8")), source=str(saved))


class RunFolder:
    """Builds one run under `<name>.partial/` and moves it into place when complete."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.partial = final.with_name(final.name + PARTIAL_SUFFIX)
        self.files = RunFiles(self.partial)
        self.restarted = False  # --resume found no complete checkpoint and started over

    @classmethod
    def begin(cls, final: Path, *, resume: bool, overwrite: bool) -> RunFolder:
        """Create (or, with resume, reopen) the partial folder; refuse to clobber anything silently.
        A resume with no complete checkpoint starts over, keeping the energy already spent."""
        run = cls(final)
        if resume:
            if run.final.exists() and not run.partial.exists():
                raise UserError(f"output_dir: {final} is already complete; nothing to resume")
            if run.last_checkpoint() is None:
                run._start_over()
            run.mark_process()
            return run
        if run.partial.exists():
            if not overwrite:
                raise UserError(
                    f"output_dir: {run.partial} holds an interrupted run; pass --resume to continue it "
                    "or --overwrite to start over"
                )
            shutil.rmtree(run.partial)
        if run.final.exists() and not overwrite:
            raise UserError(f"output_dir: {final} already holds a run; pass --overwrite or choose another output_dir")
        run.partial.mkdir(parents=True)
        run.mark_process()
        return run

    def mark_process(self) -> None:
        """Who builds the run now; a reader finding this pid gone (and no stopped.json) knows the run was killed."""
        started = psutil.Process().create_time()  # with the pid: a pid reused by a later process is not this one
        self.files.write_json(Layout.PROCESS, {"pid": os.getpid(), "host": socket.gethostname(), "started": started})

    def _start_over(self) -> None:
        """Nothing to resume from (killed before its first checkpoint was whole): train from the
        start, but keep the emission readings, so the killed session's energy still counts."""
        self.restarted = True
        self.partial.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        for name in (Layout.LOG, Layout.BASELINE):
            self.path(name).unlink(missing_ok=True)

    def path(self, name: str) -> Path:
        return self.files.path(name)

    def record_recipe(self, resolved: dict[str, Any], resume: bool) -> None:
        """The resolved recipe is saved first; a resume must use the same one."""
        saved = self.path(Layout.RECIPE)
        if resume and saved.is_file():
            before = yaml.safe_load(saved.read_text())
            changed = [key for key, value in resolved.items() if before.get(key) != value]
            if changed:
                raise UserError(
                    f"{changed[0]}: differs from the recipe the interrupted run started with ({saved}); "
                    "resume with the same recipe, or start over with --overwrite"
                )
            return
        saved.write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")

    def drop_log_after(self, step: int) -> None:
        """Steps after the resumed checkpoint are trained again; their old log lines would be doubles."""
        log = self.path(Layout.LOG)
        if log.is_file():
            lines = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= step]
            log.write_text("".join(line + "\n" for line in lines))

    @property
    def checkpoints(self) -> Path:
        return self.partial / Layout.CHECKPOINTS

    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint that was written completely (trainer_state.json is saved last)."""
        if not self.checkpoints.is_dir():
            return None
        complete = [
            (int(match.group(1)), entry)
            for entry in self.checkpoints.iterdir()
            if (match := CHECKPOINT.match(entry.name)) and (entry / "trainer_state.json").is_file()
        ]
        return max(complete)[1] if complete else None

    def save_emissions_reading(self, session: str, process: int, node: int, reading: dict[str, Any]) -> None:
        """One file per process of each session, written by that process or, for a process on another machine
        (`node`: the first rank of its machine), by the main one: no two writers share a file."""
        write_atomically(
            self.path(Layout.EMISSION_READINGS) / f"{session}-process{process}.json",
            json.dumps({**reading, "node": node}) + "\n",
        )

    def emissions_readings(self) -> dict[str, list[dict[str, Any]]]:
        """The latest reading of every process, grouped by session."""
        by_session: dict[str, list[dict[str, Any]]] = {}
        folder = self.path(Layout.EMISSION_READINGS)
        for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            session = file.stem.rsplit("-process", 1)[0]
            by_session.setdefault(session, []).append(json.loads(file.read_text()))
        return by_session

    def total_emissions(self) -> EmissionsRecord | None:
        """Processes of a session add up side by side, sessions (resumes) one after the other."""
        sessions = [
            sum_processes(
                [EmissionsRecord.from_dict(r) for r in readings], nodes=len({r.get("node", 0) for r in readings})
            )
            for readings in self.emissions_readings().values()
        ]
        return sum_records(sessions) if sessions else None

    def finalize(self) -> Path:
        """Move the finished run into place, replacing an older run only now that this one is whole;
        then drop what only the build needed (a kill in between leaves a complete run, not a broken one)."""
        if self.final.exists():
            trash = self.final.with_name(f".{self.final.name}.replaced")
            shutil.rmtree(trash, ignore_errors=True)
            self.final.rename(trash)
            self.partial.rename(self.final)
            shutil.rmtree(trash)
        else:
            self.partial.rename(self.final)
        for name in (Layout.CHECKPOINTS, Layout.EMISSION_READINGS):
            shutil.rmtree(self.final / name, ignore_errors=True)
        for name in (Layout.BASELINE, Layout.ESTIMATE, Layout.PROCESS):
            (self.final / name).unlink(missing_ok=True)
        return self.final


def read_lineage(model_dir: Path) -> dict[str, Any]:
    """What a run wrote beside its model: the Hub base model, and the chain of runs that made it
    (each with its grams CO2eq). Empty for a model folder no run wrote."""
    file = model_dir / Layout.LINEAGE
    return json.loads(file.read_text()) if file.is_file() else {}


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
