"""A run folder is built under `<name>.partial/` and renamed into place only when complete.

So a failed or killed run never leaves a folder that looks finished, and `--resume` knows where
to continue: the newest complete checkpoint in `<name>.partial/checkpoints/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from finetune_kit.errors import UserError

PARTIAL_SUFFIX = ".partial"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class RunFolder:
    RECIPE = "recipe.yaml"
    LOG = "log.jsonl"
    METRICS = "metrics.json"
    EMISSIONS = "emissions.json"
    EMISSION_READINGS = "emissions.readings"  # one file per (session, process) while the run is built
    MODEL = "model"
    CARD = "README.md"
    CHECKPOINTS = "checkpoints"
    BASELINE = "baseline_metrics.json"  # metrics before training, kept until metrics.json holds them

    def __init__(self, final: Path) -> None:
        self.final = final
        self.partial = final.with_name(final.name + PARTIAL_SUFFIX)

    @classmethod
    def begin(cls, final: Path, *, resume: bool, overwrite: bool) -> RunFolder:
        """Create (or, with resume, reopen) the partial folder; refuse to clobber anything silently."""
        run = cls(final)
        if resume:
            if run.final.exists() and not run.partial.exists():
                raise UserError(f"output_dir: {final} is already complete; nothing to resume")
            if run.last_checkpoint() is None:
                raise UserError(
                    f"output_dir: no checkpoint to resume in {run.partial}; start the run without --resume"
                )
            return run
        if run.partial.exists():
            if not overwrite:
                raise UserError(
                    f"output_dir: {run.partial} holds an interrupted run; pass --resume to continue it "
                    "or --overwrite to start over"
                )
            shutil.rmtree(run.partial)
        if run.final.exists() and not overwrite:
            raise UserError(
                f"output_dir: {final} already holds a run; pass --overwrite or choose another output_dir"
            )
        run.partial.mkdir(parents=True)
        return run

    # -- paths while the run is being built -----------------------------------------------------
    def path(self, name: str) -> Path:
        return self.partial / name

    @property
    def checkpoints(self) -> Path:
        return self.partial / self.CHECKPOINTS

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

    def write_json(self, name: str, data: Any) -> None:
        write_atomically(self.path(name), json.dumps(data, indent=2, sort_keys=False) + "\n")

    def read_json(self, name: str, default: Any = None) -> Any:
        file = self.path(name)
        return json.loads(file.read_text()) if file.is_file() else default

    def save_emissions_reading(self, session: str, process: int, reading: dict[str, Any]) -> None:
        """Each process of each session writes its own file: no two writers share one."""
        write_atomically(
            self.path(self.EMISSION_READINGS) / f"{session}-process{process}.json", json.dumps(reading) + "\n"
        )

    def emissions_readings(self) -> dict[str, list[dict[str, Any]]]:
        """The latest reading of every process, grouped by session."""
        by_session: dict[str, list[dict[str, Any]]] = {}
        folder = self.path(self.EMISSION_READINGS)
        for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            session = file.stem.rsplit("-process", 1)[0]
            by_session.setdefault(session, []).append(json.loads(file.read_text()))
        return by_session

    def finalize(self, keep_checkpoints: bool = False) -> Path:
        """Move the finished run into place, replacing an older run only now that this one is whole."""
        if not keep_checkpoints:
            shutil.rmtree(self.checkpoints, ignore_errors=True)
        shutil.rmtree(self.path(self.EMISSION_READINGS), ignore_errors=True)
        self.path(self.BASELINE).unlink(missing_ok=True)
        if self.final.exists():
            trash = self.final.with_name(f".{self.final.name}.replaced")
            shutil.rmtree(trash, ignore_errors=True)
            self.final.rename(trash)
            self.partial.rename(self.final)
            shutil.rmtree(trash)
        else:
            self.partial.rename(self.final)
        return self.final


def write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
