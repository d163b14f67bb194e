"""From what the calibration measured per unit of work to the whole run: time, kWh and grams per phase, a range,
and the seconds a running budget check keeps in hand for the end of the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from finetune_kit.config.recipe import EmissionsConfig
from finetune_kit.costs.plan import RunPlan, Work
from finetune_kit.emissions import EmissionsRecord

JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Rate:
    """One unit of some work: how long it took in the calibration, and the power drawn meanwhile."""

    seconds: float
    watts: float

    def kwh(self, units: float = 1.0) -> float:
        return self.seconds * units * self.watts / JOULES_PER_KWH


@dataclass(frozen=True)
class UnitCosts:
    """What each kind of work cost in the calibration, per unit."""

    first_steps: Rate  # all warm-up steps together: a run pays them once, beyond its other steps
    warmup_steps: int
    step: Rate  # mean of the timed steps
    step_spread: tuple[float, float]  # quartiles of the timed steps over their mean: the range's low and high
    evaluation: Rate  # a validation pass's fixed part (loader, metrics), beside its batches
    eval_batch: Rate
    generation_batch: Rate
    checkpoint: Rate
    model_save: Rate
    matmul_peak: Rate  # the benchmark behind the run's MFU, once per process
    tokenized_row: Rate
    grams_per_kwh: float  # the grid intensity codecarbon applied


@dataclass(frozen=True)
class FinishSeconds:
    """What a running budget check needs from the calibration: the next step, and the evaluation and checkpoint
    that may fall on it, and everything the end of a stopped run does (`RunPlan.finish`)."""

    step: float
    evaluation: float
    checkpoint: float
    end: float

    def to_dict(self) -> dict[str, float]:
        return _rounded(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinishSeconds:
        return cls(**{key: float(data[key]) for key in ("step", "evaluation", "checkpoint", "end")})


@dataclass(frozen=True)
class Phase:
    name: str
    work: str  # what the phase does, in words: "1,250 steps", "5 x 28 batches"
    seconds: float
    kwh: float
    grams: float
    spent: bool = False  # measured already (the calibration a budgeted `train` runs first), not extrapolated


@dataclass(frozen=True)
class Estimate:
    """The run's phases and their totals; low and high take every step as fast as the quickest quarter, or as
    slow as the slowest quarter, of the calibration's steps (and the other phases in proportion)."""

    phases: list[Phase]
    spread: tuple[float, float]
    finish: FinishSeconds

    @property
    def wall_s(self) -> float:
        return sum(p.seconds for p in self.phases)

    @property
    def kwh(self) -> float:
        return sum(p.kwh for p in self.phases)

    @property
    def co2_g(self) -> float:
        return sum(p.grams for p in self.phases)

    def against(self, emissions: EmissionsConfig) -> list[tuple[str, float, float, str]]:
        """(field, limit, estimated value, unit) for each budget the recipe's emissions section sets."""
        budgets = (("max_co2_g", emissions.max_co2_g, self.co2_g, "g"), ("max_kwh", emissions.max_kwh, self.kwh, "kWh"))
        return [(field, limit, value, unit) for field, limit, value, unit in budgets if limit is not None]

    def bound(self, side: Literal["low", "high"]) -> dict[str, float]:
        """The low or high end of the range: spent phases as they were, the others scaled."""
        ratio = self.spread[0] if side == "low" else self.spread[1]
        totals = {"wall_s": 0.0, "kwh": 0.0, "co2_g": 0.0}
        for p in self.phases:
            scale = 1.0 if p.spent else ratio
            totals["wall_s"] += p.seconds * scale
            totals["kwh"] += p.kwh * scale
            totals["co2_g"] += p.grams * scale
        return totals

    def to_dict(self) -> dict[str, Any]:
        """For metrics.json, beside the measured values, and for a resumed run's budget check."""
        return {
            **_rounded({"wall_s": self.wall_s, "kwh": self.kwh, "co2_g": self.co2_g}),
            "low": _rounded(self.bound("low")),
            "high": _rounded(self.bound("high")),
            "phases": {
                p.name: {"work": p.work, **_rounded({"wall_s": p.seconds, "kwh": p.kwh, "co2_g": p.grams})}
                for p in self.phases
            },
            "finish_seconds": self.finish.to_dict(),
        }


def predict(plan: RunPlan, units: UnitCosts, calibration: EmissionsRecord | None = None) -> Estimate:
    """The run's time and energy, phase by phase. With `calibration` (the cost of the calibration a budgeted
    `train` runs first) that cost is the first phase, and what it did once for the run is not repeated: the run
    reuses its tokenized data, and its process the measured matmul peak."""
    if calibration is None:
        phases = _phases(plan.work, units)
    else:
        phases = [_spent(calibration), *_phases(replace(plan.work, tokenized_rows=0, matmul_peaks=0), units)]
    return Estimate(phases, units.step_spread, _finish_seconds(plan, units))


def _phases(work: Work, units: UnitCosts) -> list[Phase]:
    passes = work.evaluations
    parts: list[tuple[str, str, list[tuple[Rate, float]]]] = [
        ("tokenize", f"{work.tokenized_rows:,} rows", [(units.tokenized_row, work.tokenized_rows)]),
        (
            "train",
            f"{work.steps:,} steps",
            [(units.first_steps, int(work.steps > 0)), (units.step, max(work.steps - units.warmup_steps, 0))],
        ),
        (
            "evaluate",
            f"{passes} x {work.eval_batches} batches",
            [(units.evaluation, passes), (units.eval_batch, passes * work.eval_batches)],
        ),
        (
            "test",
            f"{work.test_batches} batches",
            [(units.evaluation, int(work.test_batches > 0)), (units.eval_batch, work.test_batches)],
        ),
        ("generate", f"{work.generation_batches} batches", [(units.generation_batch, work.generation_batches)]),
        ("checkpoints", f"{work.checkpoints} saves", [(units.checkpoint, work.checkpoints)]),
        ("save model", "the final model", [(units.model_save, work.model_saves)]),
        ("mfu peak", "matmul benchmark", [(units.matmul_peak, work.matmul_peaks)]),
    ]
    phases = []
    for name, what, costs in parts:
        seconds = sum(rate.seconds * count for rate, count in costs)
        if seconds > 0:
            kwh = sum(rate.kwh(count) for rate, count in costs)
            phases.append(Phase(name, what, seconds, kwh, kwh * units.grams_per_kwh))
    return phases


def _spent(calibration: EmissionsRecord) -> Phase:
    return Phase(
        "calibration",
        "the dry run before training",
        calibration.duration_s,
        calibration.energy_kwh,
        calibration.emissions_g,
        spent=True,
    )


def _finish_seconds(plan: RunPlan, units: UnitCosts) -> FinishSeconds:
    work = plan.work
    evaluation = units.evaluation.seconds + work.eval_batches * units.eval_batch.seconds
    evaluation += plan.generation_per_evaluation * units.generation_batch.seconds
    end = sum(phase.seconds for phase in _phases(plan.finish, units))
    return FinishSeconds(units.step.seconds, evaluation, units.checkpoint.seconds, end)


def _rounded(values: dict[str, float]) -> dict[str, float]:
    """Four significant digits: a tiny run's grams are thousandths, a long one's thousands."""
    return {key: float(f"{value:.4g}") for key, value in values.items()}
