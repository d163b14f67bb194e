"""The sweep's parameters as Optuna distributions, and the recipe values a trial draws from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from optuna import Trial
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from finetune_kit.config.sweep import Distribution

SCALARS = (type(None), bool, int, float, str)  # what Optuna stores as a categorical value as it is


@dataclass(frozen=True)
class Parameter:
    """One dotted recipe field and its distribution. A choice of sections (`{method: lora}`) is stored
    in the study as its YAML text, the label this maps back to the section. A relative range draws a
    factor of the trial's default learning rate (`SweepPlan.trial_recipe` multiplies)."""

    name: str
    distribution: BaseDistribution
    sections: dict[str, Any] = field(default_factory=dict)
    relative: bool = False

    def suggest(self, trial: Trial) -> Any:
        """The trial's value, drawn by the study's sampler: a recipe value, ready to set."""
        d = self.distribution
        if isinstance(d, FloatDistribution):
            return trial.suggest_float(self.name, d.low, d.high, log=d.log, step=d.step)
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.name, d.low, d.high, step=d.step)
        return self.recipe_value(trial.suggest_categorical(self.name, d.choices))

    def recipe_value(self, stored: Any) -> Any:
        return self.sections.get(stored, stored) if isinstance(stored, str) else stored

    def extremes(self) -> list[Any]:
        """The values that bound what a trial may get: every choice, or both ends of a range."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return [self.recipe_value(choice) for choice in d.choices]
        return [d.low, d.high]


def search_space(parameters: dict[str, Distribution]) -> list[Parameter]:
    return [_parameter(name, spec) for name, spec in parameters.items()]


def _parameter(name: str, spec: Distribution) -> Parameter:
    if spec.log_uniform is not None:
        return Parameter(name, FloatDistribution(*spec.log_uniform, log=True), relative=spec.relative)
    if spec.uniform is not None:
        return Parameter(name, FloatDistribution(*spec.uniform, step=spec.step), relative=spec.relative)
    if spec.integer is not None:
        return Parameter(name, IntDistribution(*spec.integer, step=int(spec.step or 1)))
    sections = {_label(value): value for value in spec.choice if not isinstance(value, SCALARS)}
    labels = [value if isinstance(value, SCALARS) else _label(value) for value in spec.choice]
    return Parameter(name, CategoricalDistribution(labels), sections)


def _label(section: Any) -> str:
    """A section as one line of YAML, the recipe's own notation: `{method: lora}`."""
    return yaml.safe_dump(section, default_flow_style=True, width=1_000_000).strip()
