"""One trial: the sampled values set into the recipe, an ordinary training run in the sweep folder,
its objectives read back from the run's results (and its evaluations reported to the pruner). A trial
that runs again the values of one whose worker died continues that trial's run folder, as `--resume` does."""

from __future__ import annotations

import shutil
from typing import Any

import optuna
import yaml
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from finetune_kit.commands.train import train
from finetune_kit.config.recipe import Recipe
from finetune_kit.config.sweep import CO2
from finetune_kit.console import get_console, say
from finetune_kit.runs import Layout, RunFiles, RunFolder
from finetune_kit.sweep.plan import SweepPlan
from finetune_kit.sweep.study import WORKER, first_attempt

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
    number = first_attempt(next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number))
    again = number != trial.number  # its values ran in trial `number`, whose worker died
    folder = RunFolder(plan.trial_dir(number))
    trial.set_user_attr("worker", WORKER)
    trial.set_user_attr("run_dir", str(folder.final))
    values = {parameter.name: parameter.suggest(trial) for parameter in plan.parameters}  # a retry's: as queued
    if again and budget_left_g is not None and (earlier := folder.total_emissions()) is not None:
        budget_left_g += earlier.emissions_g  # the continued run counts its dead sessions against its budget again
    recipe = plan.trial_recipe(number, values, budget_left_g)
    if relative := {parameter.name for parameter in plan.parameters if parameter.relative}:
        # the study holds the factor; the report shows the learning rate the trial trained with
        trial.set_user_attr(SET_VALUES, dict.fromkeys(relative, recipe.training.learning_rate))
    set_values = {**trial.params, **trial.user_attrs.get(SET_VALUES, {})}
    shown_values = ", ".join(f"{name}={shown(v)}" for name, v in set_values.items())
    say(get_console(), f"trial {number} · {shown_values}")
    pruning = PruneOnEvaluation(trial, plan.metric.name) if plan.config.pruning else None
    if again and folder.final.is_dir() and not folder.partial.exists():
        # Its worker died once the run was whole, before the study heard: the run is not trained twice.
        say(get_console(), f"trial {number}: its worker died after finishing {folder.final}; its results are used")
        files = RunFiles(folder.final)
        metrics, record = files.metrics(), files.emissions()
    else:
        if again:
            say(get_console(), f"trial {number} runs again (its worker died): {_continue(folder, recipe)}")
        # A trial whose estimate exceeds what is left of the sweep's budget still starts: the budget stops it cleanly.
        result = train(recipe, extra_callbacks=[pruning] if pruning else [], force=True, resume=again)
        metrics, record = result.metrics, result.emissions
    metric = float(metrics["validation"][plan.metric.name])
    grams = record.emissions_g if record else None
    trial.set_user_attr("metric", metric)
    trial.set_user_attr("emissions_g", grams)
    if "stopped_on_budget" in metrics:
        trial.set_user_attr("stopped_on_budget", metrics["stopped_on_budget"]["limit"])
    outcome = f"pruned at step {pruning.pruned_at}" if pruning and pruning.pruned_at is not None else "complete"
    grams_text = f"{grams:.3g} g CO2eq" if grams is not None else "not measured"
    say(get_console(), f"trial {number} {outcome}: {plan.metric.name} {metric:.4f} · {grams_text}")
    if pruning and pruning.pruned_at is not None:
        raise optuna.TrialPruned(outcome)
    return tuple(grams if objective.name == CO2 else metric for objective in plan.objectives)


def _continue(folder: RunFolder, recipe: Recipe) -> str:
    """Ready the run folder a dead worker left for `train(resume=True)`, which continues it from its last
    complete checkpoint, or starts over keeping the emission readings (the dead sessions' energy counts
    either way); what it will do. A resume must train the recipe the run started with: one that differs
    only by the budget (what the sweep has left now) is saved in its place; one that differs otherwise
    (another machine's recipe) starts the run over."""
    if not folder.partial.is_dir():
        return f"its run folder is not on this machine: starting {folder.partial.name}"
    saved = folder.path(Layout.RECIPE)
    if saved.is_file():
        now = recipe.model_dump(mode="json")
        if _without_budget(yaml.safe_load(saved.read_text(encoding="utf-8"))) == _without_budget(now):
            folder.record_recipe(now, resume=False)
            if (checkpoint := folder.last_checkpoint()) is not None:
                return f"continuing {folder.partial.name} from {checkpoint.name}"
        else:
            saved.unlink()
            shutil.rmtree(folder.checkpoints, ignore_errors=True)
            return f"starting {folder.partial.name} over (its recipe differs here), the energy it spent kept"
    return f"starting {folder.partial.name} over (no checkpoint to continue), the energy it spent kept"


def _without_budget(resolved: dict[str, Any]) -> dict[str, Any]:
    emissions = {key: value for key, value in (resolved.get("emissions") or {}).items() if key != "max_co2_g"}
    return {**resolved, "emissions": emissions}


def shown(value: Any) -> str:
    """A parameter value as tables and progress lines show it: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
