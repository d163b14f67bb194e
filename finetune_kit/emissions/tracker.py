"""codecarbon's OfflineEmissionsTracker, wrapped so a run gets grams, kWh and the hardware it ran on.

Offline on purpose: the online tracker (and Trainer's `report_to="codecarbon"`) reaches the network.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from codecarbon import OfflineEmissionsTracker
from codecarbon.output_methods.base_output import BaseOutput
from codecarbon.output_methods.emissions_data import EmissionsData

from finetune_kit.config.recipe import EmissionsConfig

GRAMS_PER_KG = 1000.0


@dataclass(frozen=True)
class EmissionsRecord:
    """One measured span of work, in the Hub's units (grams CO2eq)."""

    emissions_g: float
    energy_kwh: float
    duration_s: float
    cpu_model: str
    gpu_model: str
    country_name: str
    country_iso_code: str
    region: str | None
    cpu_count: int
    gpu_count: int
    codecarbon_version: str
    sessions: int = 1
    processes: int = 1
    nodes: int = 1  # machines the processes ran on (a multi-node run)
    source: str = "codecarbon"

    @property
    def hardware(self) -> str:
        parts = [f"{self.cpu_model or 'CPU'} ({self.cpu_count} cores)"]
        if self.gpu_count:
            parts.append(f"{self.gpu_count} x {self.gpu_model}")
        hardware = ", ".join(parts)
        return f"{self.nodes} machines, the first: {hardware}" if self.nodes > 1 else hardware

    @property
    def location(self) -> str:
        return ", ".join(p for p in (self.region, self.country_name) if p) or "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hardware": self.hardware, "geographical_location": self.location}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmissionsRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_codecarbon(cls, data: EmissionsData) -> EmissionsRecord:
        return cls(
            emissions_g=data.emissions * GRAMS_PER_KG,
            energy_kwh=data.energy_consumed,
            duration_s=data.duration,
            cpu_model=data.cpu_model or "",
            gpu_model=data.gpu_model or "",
            country_name=data.country_name or "",
            country_iso_code=data.country_iso_code or "",
            region=data.region or None,
            cpu_count=int(data.cpu_count or 0),
            gpu_count=int(data.gpu_count or 0),
            codecarbon_version=data.codecarbon_version,
        )


def sum_records(records: list[EmissionsRecord]) -> EmissionsRecord:
    """Sessions of one run, one after the other (resumes): energy and time add up."""
    return replace(
        records[0],
        emissions_g=sum(r.emissions_g for r in records),
        energy_kwh=sum(r.energy_kwh for r in records),
        duration_s=sum(r.duration_s for r in records),
        sessions=sum(r.sessions for r in records),
        processes=max(r.processes for r in records),
        nodes=max(r.nodes for r in records),
    )


def sum_processes(records: list[EmissionsRecord], nodes: int = 1) -> EmissionsRecord:
    """Processes of one session, side by side (DDP ranks, on `nodes` machines): energy adds up, time does not."""
    return replace(
        records[0],
        emissions_g=sum(r.emissions_g for r in records),
        energy_kwh=sum(r.energy_kwh for r in records),
        duration_s=max(r.duration_s for r in records),
        processes=sum(r.processes for r in records),
        nodes=nodes,
    )


@dataclass(frozen=True)
class EmissionsBudget:
    max_co2_g: float | None = None
    max_kwh: float | None = None

    @classmethod
    def from_config(cls, config: EmissionsConfig) -> EmissionsBudget | None:
        if config.max_co2_g is None and config.max_kwh is None:
            return None
        return cls(config.max_co2_g, config.max_kwh)

    def exceeded(self, spent: EmissionsRecord) -> str | None:
        """Which limit the spending reached, as text for results and cards; None within budget."""
        if self.max_co2_g is not None and spent.emissions_g >= self.max_co2_g:
            return f"max_co2_g {self.max_co2_g:g} g"
        if self.max_kwh is not None and spent.energy_kwh >= self.max_kwh:
            return f"max_kwh {self.max_kwh:g} kWh"
        return None


class _LatestReading(BaseOutput):
    """codecarbon output handler that keeps the newest cumulative reading in memory."""

    def __init__(self) -> None:
        self.total: EmissionsData | None = None

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self.total = total


class RunTracker:
    """Start, read (without stopping) and stop codecarbon for one process of one run."""

    def __init__(self, config: EmissionsConfig, run_name: str, one_of_several_processes: bool = False) -> None:
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self._reading = _LatestReading()
        options: dict[str, Any] = {
            "project_name": run_name,
            "measure_power_secs": config.measure_power_secs,
            "save_to_file": False,
            "output_handlers": [self._reading],
            "log_level": "error",
            # Several training processes on one machine each measure their own share, so that
            # their sum is the job's energy, not the machine's energy counted once per process.
            "tracking_mode": "process" if one_of_several_processes else "machine",
        }
        if config.country_iso_code:
            options["country_iso_code"] = config.country_iso_code.upper()
        if config.region:
            options["region"] = config.region
        if config.cpu_power_watts:
            options["force_cpu_power"] = config.cpu_power_watts
        if config.carbon_intensity_g_per_kwh:
            options["force_carbon_intensity_g_co2e_kwh"] = config.carbon_intensity_g_per_kwh
        self._tracker = OfflineEmissionsTracker(**options)
        self._running = False

    def start(self) -> None:
        self._tracker.start()
        self._running = True

    def read(self) -> EmissionsRecord | None:
        """Emissions so far, while tracking goes on."""
        if not self._running:
            return None
        self._tracker.flush()
        return EmissionsRecord.from_codecarbon(self._reading.total) if self._reading.total else None

    def stop(self) -> EmissionsRecord | None:
        if not self._running:
            return None
        self._running = False
        self._tracker.stop()
        data = getattr(self._tracker, "final_emissions_data", None)
        return EmissionsRecord.from_codecarbon(data) if data else None
