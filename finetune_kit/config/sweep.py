"""The recipe's `sweep:` section: which fields to search, over what values, for how many trials,
judged by which objectives. Checks that need the recipe itself (field names, the task's metrics)
are made when the sweep is planned (`sweep.plan`)."""

from __future__ import annotations

import difflib
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, NonNegativeInt, PositiveInt, model_validator

from finetune_kit.config.section import Section

CO2 = "co2"  # the objective that minimises each trial's grams CO2eq
DISTRIBUTION_KINDS = ("log_uniform", "uniform", "int", "choice")
RELATIVE_FIELD = "training.learning_rate"  # the one field whose default follows the trial's method


class Distribution(Section):
    """One field's values: `{log_uniform: [lo, hi]}`, `{uniform: [lo, hi]}`, `{int: [lo, hi]}` (each
    with an optional `step`, not on a log scale) or `{choice: [...]}`, where a choice may be a whole
    section (`peft: {choice: [null, {method: lora}]}`). A learning-rate range may be `relative`: factors
    of each trial's own default, so full fine-tuning and adapter trials each search around theirs."""

    log_uniform: tuple[float, float] | None = Field(None, description="[low, high], sampled on a log scale")
    uniform: tuple[float, float] | None = Field(None, description="[low, high]")
    integer: tuple[int, int] | None = Field(None, alias="int", description="[low, high], both included")
    step: float | None = Field(None, gt=0, description="Spacing of uniform or int values")
    choice: list[Any] | None = Field(None, min_length=1, description="Any recipe values, sections included")
    relative: bool = Field(
        False,
        description=f"{RELATIVE_FIELD} only: low and high are factors of the trial's default learning rate, which "
        "follows its method (5e-5 full fine-tuning; with peft, the task family's: 1e-3 for classification). "
        "{log_uniform: [0.25, 4], relative: true} searches 1.25e-5 to 2e-4 for full trials and 2.5e-4 to 4e-3 "
        "for classification LoRA trials",
    )

    @model_validator(mode="before")
    @classmethod
    def _known_kind(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data.keys() - {*DISTRIBUTION_KINDS, "step", "relative"}:
                close = difflib.get_close_matches(str(key), DISTRIBUTION_KINDS, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(DISTRIBUTION_KINDS)}"
                raise ValueError(f"unknown distribution '{key}'; {hint}")
        return data

    @model_validator(mode="after")
    def _one_valid_range(self) -> Distribution:
        given = [kind for kind in DISTRIBUTION_KINDS if self._values_of(kind) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(DISTRIBUTION_KINDS)} (got {', '.join(given) or 'none'})")
        bounds = self.log_uniform or self.uniform or self.integer
        if bounds is not None and bounds[0] >= bounds[1]:
            raise ValueError(f"low {bounds[0]:g} must be below high {bounds[1]:g}")
        if self.log_uniform is not None and self.log_uniform[0] <= 0:
            raise ValueError(f"log_uniform needs low > 0 (got {self.log_uniform[0]:g}); use uniform for a range from 0")
        if self.step is not None and self.kind not in ("uniform", "int"):
            raise ValueError("step applies to uniform and int ranges only")
        if self.relative and self.kind not in ("log_uniform", "uniform"):
            raise ValueError("relative applies to log_uniform and uniform ranges only (factors of a learning rate)")
        if self.step is not None and self.integer is not None and not float(self.step).is_integer():
            raise ValueError(f"an int range needs a whole step (got {self.step:g})")
        return self

    def _values_of(self, kind: str) -> Any:
        return self.integer if kind == "int" else getattr(self, kind)

    @property
    def kind(self) -> str:
        return next(kind for kind in DISTRIBUTION_KINDS if self._values_of(kind) is not None)


class PruningConfig(Section):
    """Median pruning: a trial whose evaluation is worse than the median of earlier trials' at the
    same step stops there (its run folder still completes, with the model it reached)."""

    startup_trials: PositiveInt = Field(3, description="Trials that finish before any is pruned")
    warmup_steps: NonNegativeInt = Field(0, description="Steps of every trial before it may be pruned")


def _pruning_switch(value: Any) -> Any:
    """`pruning: true` takes the defaults, `false` turns it off; a mapping sets the options."""
    if value is True:
        return {}
    return None if value is False else value


class SweepConfig(Section):
    parameters: dict[str, Distribution] = Field(
        min_length=1,
        description="Dotted recipe fields (training.learning_rate, peft) → their values; trials that choose "
        "between full fine-tuning and peft search learning rates with relative: true",
    )
    trials: PositiveInt = Field(10, description="Finished (complete or pruned) trials the sweep runs")
    objectives: list[str] | None = Field(
        None, description="Default: the task's main metric; add co2 for a Pareto front of metric vs grams CO2eq"
    )
    pruning: Annotated[PruningConfig | None, BeforeValidator(_pruning_switch)] = Field(
        None, description="true: stop trials that trail the median at an evaluation (single objective only)"
    )
    max_co2_g: float | None = Field(None, gt=0, description="Budget of the whole sweep: no trial starts past it")
    seed: int = Field(42, description="Sampler seed: the same sweep in one process draws the same trials")
    dead_after_s: int = Field(
        180,
        ge=3,
        description="A trial whose process has sent no heartbeat for this long (its machine died) is failed and, with "
        "--storage, run again with the same values by a process still running; heartbeats go every third of it. "
        "Shorter frees a dead machine's trial sooner (preemptible VMs); longer spares trials on a flaky network",
    )

    @model_validator(mode="after")
    def _objectives_fit(self) -> SweepConfig:
        if self.objectives is not None:
            metrics = [name for name in self.objectives if name != CO2]
            if len(metrics) != 1 or len(set(self.objectives)) != len(self.objectives):
                raise ValueError(
                    f"objectives: name one metric of the task, optionally with {CO2} (got {self.objectives})"
                )
        if self.pruning is not None and self.objectives is not None and CO2 in self.objectives:
            raise ValueError(
                f"pruning stops single-objective trials only; drop {CO2} from sweep.objectives or set pruning: false"
            )
        return self
