"""A sweep checked against its recipe before anything is written: every parameter names a field of
the recipe and every value it may take makes a valid recipe; every objective is one the task
reports. Then each trial's recipe is the base recipe with the trial's values set the way `--set`
sets them; a relative learning rate is a factor of the default of the trial's method."""

from __future__ import annotations

import copy
import difflib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from finetune_kit.config.loading import field_names, load_recipe_file, set_field, validate_recipe
from finetune_kit.config.recipe import Recipe
from finetune_kit.config.sweep import CO2, RELATIVE_FIELD, SweepConfig
from finetune_kit.errors import RecipeError
from finetune_kit.sweep.space import Parameter, search_space
from finetune_kit.tasks import build_task

LOSS = "loss"  # every task's evaluation reports it


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Literal["maximize", "minimize"]

    @property
    def greater_is_better(self) -> bool:
        return self.direction == "maximize"


@dataclass(frozen=True)
class SweepPlan:
    source: Path
    base: dict[str, Any]  # the raw recipe, `--set` applied, without its sweep section
    recipe: Recipe
    config: SweepConfig
    parameters: list[Parameter]
    objectives: list[Objective]

    @property
    def name(self) -> str:
        return self.recipe.name or self.source.stem

    @property
    def folder(self) -> Path:
        return self.recipe.run_dir

    @property
    def metric(self) -> Objective:
        """The one objective that is not grams: what the pruner watches and the table shows."""
        return next(objective for objective in self.objectives if objective.name != CO2)

    def trial_dir(self, number: int) -> Path:
        return self.folder / f"trial-{number:04d}"

    def trial_recipe(self, number: int, values: dict[str, Any], max_co2_g: float | None) -> Recipe:
        """The base recipe with the trial's values, its own run folder and what is left of the budget.
        A relative value is set last: a factor of the default learning rate of the method just set."""
        raw = copy.deepcopy(self.base)
        relative = [parameter.name for parameter in self.parameters if parameter.relative]
        for name, value in values.items():
            if name not in relative:
                set_field(raw, name, value, where=f"sweep.parameters.{name}")
        source = f"{self.source} (trial {number})"
        for name in relative:
            set_field(raw, name, values[name] * default_learning_rate(raw, source), where=f"sweep.parameters.{name}")
        raw["name"], raw["output_dir"] = f"{self.name}-{self.trial_dir(number).name}", str(self.trial_dir(number))
        if max_co2_g is not None:
            own = self.recipe.emissions.max_co2_g
            set_field(raw, "emissions.max_co2_g", min(max_co2_g, own) if own else max_co2_g, where="sweep.max_co2_g")
        return validate_recipe(raw, source=source)


def plan_sweep(path: Path, overrides: list[str] | None = None) -> SweepPlan:
    raw = load_recipe_file(path, overrides)
    recipe = validate_recipe(copy.deepcopy(raw), source=str(path))
    config = recipe.sweep
    if config is None:
        raise RecipeError(f"{path}: sweep: no sweep section; add sweep.parameters (see recipes/sst2_sweep.yaml)")
    base = {key: value for key, value in raw.items() if key != "sweep"}
    _check_fields(path, type(recipe), config)
    parameters = search_space(config.parameters)
    for parameter in parameters:
        _check_values(path, base, parameter, parameters)
    objectives = _objectives(path, recipe, config)
    _check_measurements(path, recipe, config, objectives)
    return SweepPlan(path, base, recipe, config, parameters, objectives)


def default_learning_rate(raw: dict[str, Any], source: str) -> float:
    """The learning rate a raw recipe trains with when it sets none: the recipe resolves it from the
    method (full fine-tuning, or the task family's for an adapter)."""
    unset = copy.deepcopy(raw)
    (unset.get("training") or {}).pop("learning_rate", None)
    return validate_recipe(unset, source=source).training.learning_rate


def _check_fields(path: Path, recipe_class: type[Recipe], config: SweepConfig) -> None:
    known = [name for name in field_names(recipe_class) if name.split(".")[0] != "sweep"]
    open_sections = tuple(name.removesuffix("*") for name in known if name.endswith(".*"))
    for name, spec in config.parameters.items():
        if spec.relative and name != RELATIVE_FIELD:
            raise RecipeError(
                f"{path}: sweep.parameters.{name}: relative: only {RELATIVE_FIELD} has a default that follows the "
                "trial's method; give this range in the field's own units"
            )
        if name in known or (name.startswith(open_sections) and open_sections):
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "name a dotted field, e.g. training.learning_rate"
        raise RecipeError(f"{path}: sweep.parameters.{name}: not a field of a {recipe_class.__name__}; {hint}")


def _check_values(path: Path, base: dict[str, Any], parameter: Parameter, parameters: list[Parameter]) -> None:
    """Each value a trial may get, set alone, must make a valid recipe: a range past a field's limits
    fails now, not trials later. A relative range reaches its factors times the default of every method
    a trial may train with."""
    where = f"{path}: sweep.parameters.{parameter.name}"
    values = parameter.extremes()
    if parameter.relative:
        defaults = sorted({default_learning_rate(raw, where) for raw in _method_variants(path, base, parameters)})
        values = [factor * default for default in defaults for factor in values]
    for value in values:
        raw = copy.deepcopy(base)
        set_field(raw, parameter.name, value, where=where)
        validate_recipe(raw, source=f"{where}: the value {value!r} fails")


def _method_variants(path: Path, base: dict[str, Any], parameters: list[Parameter]) -> list[dict[str, Any]]:
    """The base recipe with each combination of the extremes of the parameters that choose the trial's
    method (`peft` and its fields): the methods whose default learning rates a relative range scales."""
    method = [parameter for parameter in parameters if parameter.name.split(".")[0] == "peft"]
    variants = []
    for values in itertools.product(*(parameter.extremes() for parameter in method)):
        raw = copy.deepcopy(base)
        for parameter, value in zip(method, values, strict=True):
            set_field(raw, parameter.name, value, where=f"{path}: sweep.parameters.{parameter.name}")
        variants.append(raw)
    return variants


def _objectives(path: Path, recipe: Recipe, config: SweepConfig) -> list[Objective]:
    """Names → directions: the task's main metric its own way (a recipe may choose it: a preference
    loss), loss and grams down."""
    task = build_task(recipe)
    directions = {
        LOSS: "minimize",
        CO2: "minimize",
        task.main_metric: "maximize" if task.greater_is_better else "minimize",
    }
    names = config.objectives or [task.main_metric]
    for name in names:
        if name not in directions:
            choices = ", ".join(dict.fromkeys([task.main_metric, LOSS, CO2]))
            raise RecipeError(
                f"{path}: sweep.objectives: '{name}' is not a metric the {recipe.task} task reports; choose {choices}"
            )
    return [Objective(name, directions[name]) for name in names]


def _check_measurements(path: Path, recipe: Recipe, config: SweepConfig, objectives: list[Objective]) -> None:
    """What the sweep watches must be measured: grams for a budget or a co2 objective, evaluations
    during training for pruning."""
    needs_grams = config.max_co2_g is not None or any(objective.name == CO2 for objective in objectives)
    if needs_grams and not recipe.emissions.enabled:
        raise RecipeError(
            f"{path}: emissions.enabled: false, but sweep.max_co2_g and a co2 objective need grams; set it to true"
        )
    if config.pruning is not None and recipe.training.eval_strategy == "no":
        raise RecipeError(
            f"{path}: sweep.pruning: needs evaluations during training; set training.eval_strategy to epoch or steps"
        )
