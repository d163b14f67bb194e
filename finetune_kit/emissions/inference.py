"""Energy and CO2 of using a model (`predict`, `eval`, `generate`, `chat`), per 1,000 predictions or
generated tokens: the figure that tells what a model costs to run, next to what it cost to train.

Measured like training, with codecarbon's offline tracker (`RunTracker`) and the run's emissions
settings (country, forced power or intensity), so the two compare.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from finetune_kit.config.recipe import EmissionsConfig
from finetune_kit.emissions.tracker import EmissionsRecord, RunTracker

PER = 1000  # figures are per 1,000 predictions or tokens
SHORTEST_SAMPLE_S = 0.06  # codecarbon samples again once its last sample is 0.05 s old
MILLIGRAMS_PER_GRAM = 1000.0
WH_PER_KWH = 1000.0


@dataclass(frozen=True)
class InferenceEnergy:
    """What one command's inference consumed, and how many predictions (or tokens) it produced."""

    record: EmissionsRecord
    count: int
    unit: str  # "predictions" or "generated tokens"
    backend: str = "pytorch"

    @property
    def mg_per_thousand(self) -> float:
        return self.record.emissions_g * MILLIGRAMS_PER_GRAM * PER / self.count

    @property
    def wh_per_thousand(self) -> float:
        return self.record.energy_kwh * WH_PER_KWH * PER / self.count

    def summary(self) -> str:
        """`2.31 mg CO2eq and 0.0412 Wh per 1,000 predictions`: the figure people compare."""
        return f"{self.mg_per_thousand:.3g} mg CO2eq and {self.wh_per_thousand:.3g} Wh per {PER:,} {self.unit}"

    def line(self) -> str:
        """The one line a command prints after its results."""
        return (
            f"inference energy ({self.backend}): {self.summary()} "
            f"({self.count:,} {self.unit} in {self.record.duration_s:.1f} s on {self.record.hardware}, "
            f"{self.record.location})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "count": self.count,
            "backend": self.backend,
            "mg_co2eq_per_1000": self.mg_per_thousand,
            "wh_per_1000": self.wh_per_thousand,
            **self.record.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InferenceEnergy:
        return cls(EmissionsRecord.from_dict(data), data["count"], data["unit"], data.get("backend", "pytorch"))


class InferenceMeter:
    """codecarbon's tracker running while a command works; only the spans inside `measuring()` count
    (the model's forward passes or generation, not loading it, nor a chat waiting for the next
    message). `add` counts what they produced. The result is None when the run's recipe switches
    emissions off, nothing was produced, or codecarbon gave no reading."""

    def __init__(self, config: EmissionsConfig, unit: str, backend: str = "pytorch") -> None:
        self.unit, self.backend = unit, backend
        self.count = 0
        self._tracker = RunTracker(config, f"inference-{unit.replace(' ', '-')}") if config.enabled else None
        self._spent: EmissionsRecord | None = None

    def __enter__(self) -> InferenceMeter:
        if self._tracker is not None:
            self._tracker.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._tracker is not None:
            self._tracker.stop()

    @contextmanager
    def measuring(self) -> Iterator[None]:
        """codecarbon takes a new sample only when its last is 50 ms old (`flush`): a shorter span is
        read once 50 ms have passed, else its energy would land outside it (and read as zero)."""
        before = self._tracker.read() if self._tracker is not None else None
        started = time.perf_counter()
        yield
        time.sleep(max(0.0, SHORTEST_SAMPLE_S - (time.perf_counter() - started)))
        after = self._tracker.read() if self._tracker is not None else None
        if after is not None:
            self._spent = _added(self._spent, after, before)

    def add(self, count: int) -> None:
        self.count += count

    @property
    def result(self) -> InferenceEnergy | None:
        if self._spent is None or self.count == 0:
            return None
        return InferenceEnergy(self._spent, self.count, self.unit, self.backend)


def _added(spent: EmissionsRecord | None, after: EmissionsRecord, before: EmissionsRecord | None) -> EmissionsRecord:
    """What was spent so far plus the span from `before` to `after` (codecarbon's readings are cumulative)."""

    def so_far(name: str) -> float:
        return getattr(spent, name) if spent is not None else 0.0

    def span(name: str) -> float:
        return getattr(after, name) - (getattr(before, name) if before is not None else 0.0)

    return replace(after, **{name: so_far(name) + span(name) for name in ("emissions_g", "energy_kwh", "duration_s")})
