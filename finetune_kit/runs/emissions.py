"""Compare finished runs by what they cost and what they bought: grams, kWh, metric per gram."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from finetune_kit.emissions.tracker import EmissionsRecord
from finetune_kit.errors import UserError
from finetune_kit.runs import FinishedRun


@dataclass
class RunEmissions:
    run: str
    record: EmissionsRecord
    main_metric: str
    metric_value: float | None
    chain_g: float | None = None  # this run and every run it descends from, when there are several

    @property
    def metric_per_gram(self) -> float | None:
        if self.metric_value is None or self.record.emissions_g <= 0:
            return None
        return self.metric_value / self.record.emissions_g


def read_run_emissions(run_dir: Path) -> RunEmissions:
    run = FinishedRun.open(run_dir)
    metrics, record = run.metrics(), run.emissions()
    if record is None:
        raise UserError(f"{run_dir}: no emissions record; the run was trained with emissions.enabled: false")
    main = metrics.get("main_metric", "")
    value = metrics.get("test", metrics.get("validation", {})).get(main)
    chain = run.lineage().get("chain", [])
    chain_g = sum(link["emissions_g"] or 0 for link in chain) if len(chain) > 1 else None
    return RunEmissions(run_dir.name, record, main, value, chain_g)
