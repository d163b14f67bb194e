"""Compare finished runs by what they cost and what they bought: grams, kWh, metric per gram."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from finetune_kit.emissions.tracker import EmissionsRecord
from finetune_kit.errors import UserError


@dataclass
class RunEmissions:
    run: str
    record: EmissionsRecord
    main_metric: str
    metric_value: float | None

    @property
    def metric_per_gram(self) -> float | None:
        if self.metric_value is None or self.record.emissions_g <= 0:
            return None
        return self.metric_value / self.record.emissions_g


def read_run_emissions(run_dir: Path) -> RunEmissions:
    emissions_file, metrics_file = run_dir / "emissions.json", run_dir / "metrics.json"
    if not metrics_file.is_file():
        raise UserError(f"{run_dir}: no metrics.json; not a finished run folder")
    if not emissions_file.is_file():
        raise UserError(f"{run_dir}: no emissions.json; the run was trained with emissions.enabled: false")
    metrics = json.loads(metrics_file.read_text())
    main = metrics.get("main_metric", "")
    value = metrics.get("test", metrics.get("validation", {})).get(main)
    return RunEmissions(run_dir.name, EmissionsRecord.from_dict(json.loads(emissions_file.read_text())), main, value)
