"""Estimates the studio made before it started a run, kept beside the runs folder so the run page shows the
estimate next to what the run measured, after a reload or a restart of the studio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetune_kit.runs.folder import write_atomically

FOLDER = ".studio/estimates"


class EstimateStore:
    def __init__(self, runs_root: Path) -> None:
        self.folder = runs_root / FOLDER

    def _file(self, run_path: Path, root: Path) -> Path:
        return self.folder / f"{run_path.relative_to(root).as_posix().replace('/', '__')}.json"

    def save(self, run_path: Path, root: Path, estimate: dict[str, Any]) -> None:
        write_atomically(self._file(run_path, root), json.dumps(estimate, indent=2) + "\n")

    def load(self, run_path: Path, root: Path) -> dict[str, Any] | None:
        file = self._file(run_path, root)
        return json.loads(file.read_text()) if file.is_file() else None
