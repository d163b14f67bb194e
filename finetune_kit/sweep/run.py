"""`finetune-kit sweep`: plan (every check first), open the study, run trials until the study holds the
planned number or the sweep's CO2 budget is spent, then report."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from finetune_kit.errors import UserError

try:
    import optuna
except ImportError:  # the `sweep` extra
    raise UserError("finetune-kit sweep needs Optuna: pip install 'finetune-kit[sweep]'") from None
from filelock import FileLock

from finetune_kit.console import get_console, say
from finetune_kit.sweep.plan import SweepPlan, plan_sweep
from finetune_kit.sweep.plot import plot_front
from finetune_kit.sweep.report import SweepReport, note_on_best_card, summarise, trial_grams, write_report
from finetune_kit.sweep.study import fail_abandoned_trials, occupied, open_study
from finetune_kit.sweep.trial import run_trial
from finetune_kit.training import prepare


def run_sweep(
    recipe_path: Path, overrides: list[str] | None = None, *, resume: bool = False, storage: str | None = None
) -> SweepReport:
    """Run the recipe's sweep (or its share of a shared one) and write sweep.json, pareto.png and the best card."""
    plan = plan_sweep(recipe_path, overrides)
    prepare(plan.recipe)  # data, tokenizer and checkpoint checked before anything is written, as `train` does
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the sweep says what each trial did, in one line
    opened = open_study(plan, storage, resume=resume)
    stopped = _run_trials(plan, opened.study, opened.turns)
    report = summarise(plan, opened.study, opened.url, stopped)
    write_report(report)
    plot_front(report)
    note_on_best_card(report)
    return report


def _run_trials(plan: SweepPlan, study: optuna.Study, turns: FileLock) -> str | None:
    """Trials one after the other until the study holds the planned number (this process's and any
    other's), or the budget is spent: then why. Counting and adding a trial is one process's turn at a
    time, so the processes of a machine never add more than planned between them."""
    while True:
        turns.acquire()
        try:
            if failed := fail_abandoned_trials(study):  # they no longer hold a place in the plan
                say(get_console(), f"trial {', '.join(map(str, failed))} left running by a killed process: failed")
            if occupied(study) >= plan.config.trials:
                return None
            budget_left = _budget_left(plan, study)
            if budget_left is not None and budget_left <= 0:
                return f"the sweep's budget max_co2_g {plan.config.max_co2_g:g} g is spent"
            study.optimize(partial(_end_turn_and_run, turns, plan, budget_left), n_trials=1, gc_after_trial=True)
        finally:
            if turns.is_locked:  # no trial started
                turns.release()


def _end_turn_and_run(
    turns: FileLock, plan: SweepPlan, budget_left: float | None, trial: optuna.Trial
) -> tuple[float, ...]:
    turns.release()  # the trial is in the study: other processes count it from now on
    return run_trial(plan, trial, budget_left)


def _budget_left(plan: SweepPlan, study: optuna.Study) -> float | None:
    """Grams the next trial may spend: the sweep's budget less every trial's so far, failed ones included."""
    if plan.config.max_co2_g is None:
        return None
    spent = sum(grams for trial in study.get_trials(deepcopy=False) if (grams := trial_grams(trial)) is not None)
    return plan.config.max_co2_g - spent
