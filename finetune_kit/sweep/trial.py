"""One trial: the sampled values set into the recipe, an ordinary training run in the sweep folder,
its objectives read back from the run's results (and its evaluations reported to the pruner)."""

from __future__ import annotations

from typing import Any

import optuna
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from finetune_kit.commands.train import train
from finetune_kit.config.sweep import CO2
from finetune_kit.console import get_console, say
from finetune_kit.sweep.plan import SweepPlan
from finetune_kit.sweep.study import WORKER

SET_VALUES = "set_values"  # a trial's user attribute: relative parameters → the value set in its recipe


class PruneOnEvaluation(TrainerCallback):
    """Reports each evaluation during training to the trial and stops training when the pruner says
    so. The run still finishes (final evaluation, model, card); the sweep then marks the trial pruned."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.key = f"eval_{metric}"  # evaluations during training; the final ones are named by split
        self.pruned_at: int | None = None

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics=None, **kw):
        if self.pruned_at is not None or not metrics or self.key not in metrics:
            return
        self.trial.report(float(metrics[self.key]), state.global_step)
        if self.trial.should_prune():
            self.pruned_at = state.global_step
            control.should_training_stop = True


def run_trial(plan: SweepPlan, trial: optuna.Trial, budget_left_g: float | None) -> tuple[float, ...]:
    """Train one trial; its objectives in the study's order. Raises TrialPruned once a pruned run is saved."""
    trial.set_user_attr("worker", WORKER)
    trial.set_user_attr("run_dir", str(plan.trial_dir(trial.number)))
    values = {parameter.name: parameter.suggest(trial) for parameter in plan.parameters}
    recipe = plan.trial_recipe(trial.number, values, budget_left_g)
    if relative := {parameter.name for parameter in plan.parameters if parameter.relative}:
        # the study holds the factor; the report shows the learning rate the trial trained with
        trial.set_user_attr(SET_VALUES, dict.fromkeys(relative, recipe.training.learning_rate))
    set_values = {**trial.params, **trial.user_attrs.get(SET_VALUES, {})}
    say(get_console(), f"trial {trial.number} · " + ", ".join(f"{name}={shown(v)}" for name, v in set_values.items()))
    pruning = PruneOnEvaluation(trial, plan.metric.name) if plan.config.pruning else None
    # A trial whose estimate exceeds what is left of the sweep's budget still starts: the budget stops it cleanly.
    result = train(recipe, extra_callbacks=[pruning] if pruning else [], force=True)
    metric = float(result.metrics["validation"][plan.metric.name])
    grams = result.emissions.emissions_g if result.emissions else None
    trial.set_user_attr("metric", metric)
    trial.set_user_attr("emissions_g", grams)
    if "stopped_on_budget" in result.metrics:
        trial.set_user_attr("stopped_on_budget", result.metrics["stopped_on_budget"]["limit"])
    outcome = f"pruned at step {pruning.pruned_at}" if pruning and pruning.pruned_at is not None else "complete"
    grams_text = f"{grams:.3g} g CO2eq" if grams is not None else "not measured"
    say(get_console(), f"trial {trial.number} {outcome}: {plan.metric.name} {metric:.4f} · {grams_text}")
    if pruning and pruning.pruned_at is not None:
        raise optuna.TrialPruned(outcome)
    return tuple(grams if objective.name == CO2 else metric for objective in plan.objectives)


def shown(value: Any) -> str:
    """A parameter value as tables and progress lines show it: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
