"""`finetune-kit sweep`: plan (every check first), open the study, run trials until the study holds the
planned number or the sweep's CO2 budget is spent, then report."""

from __future__ import annotations

import time
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
from finetune_kit.sweep.report import SweepReport, attempt_grams, note_on_best_card, summarise, write_report
from finetune_kit.sweep.study import (
    SweepStudy,
    attempts,
    fail_abandoned_trials,
    first_attempt,
    held,
    open_study,
    retry_history,
)
from finetune_kit.sweep.trial import run_trial
from finetune_kit.training import prepare


def run_sweep(
    recipe_path: Path, overrides: list[str] | None = None, *, resume: bool = False, storage: str | None = None
) -> SweepReport:
    """Run the recipe's sweep (or its share of a shared one) and write sweep.json, pareto.png and the best card."""
    plan = check_sweep(recipe_path, overrides)
    opened = open_study(plan, storage, resume=resume)
    return report_sweep(plan, opened, run_trials(plan, opened))


def check_sweep(recipe_path: Path, overrides: list[str] | None = None) -> SweepPlan:
    """The plan, with its data, tokenizer and checkpoint checked before anything is written, as `train` does."""
    plan = plan_sweep(recipe_path, overrides)
    prepare(plan.recipe)
    quiet_optuna()
    return plan


def quiet_optuna() -> None:
    """The sweep says what each trial did, in one line: Optuna's own lines only for errors."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def report_sweep(plan: SweepPlan, opened: SweepStudy, stopped: str | None) -> SweepReport:
    """The whole study's report: sweep.json, pareto.png and the note on the best trial's card."""
    report = summarise(plan, opened.study, opened.url, stopped)
    write_report(report)
    plot_front(report)
    note_on_best_card(report)
    return report


def run_trials(plan: SweepPlan, opened: SweepStudy) -> str | None:
    """Trials one after the other until the study holds the planned number finished (this process's and
    any other's), or the budget is spent: then why. Counting and adding a trial is one process's turn at a
    time, so the processes of a machine never add more than planned between them. Values queued again
    after their worker died run first; while the rest of the plan runs elsewhere this process waits, to
    run again the trial of a worker that dies (and to report the whole sweep)."""
    study, turns, waited_for = opened.study, opened.turns, ""
    while True:
        turns.acquire()
        try:
            for line in fail_abandoned_trials(study, opened.retry, opened.dead_after_s):  # no longer in the plan
                say(get_console(), line)
            trials = held(study)
            if trials.finished >= plan.config.trials:
                return None
            budget_left = _budget_left(plan, study)
            if budget_left is not None and budget_left <= 0:
                return f"the sweep's budget max_co2_g {plan.config.max_co2_g:g} g is spent"
            if not trials.waiting and trials.occupied >= plan.config.trials:
                turns.release()
                running = ", ".join(f"{first_attempt(t)} ({t.user_attrs.get('worker', '?')})" for t in trials.running)
                if running != waited_for:
                    say(
                        get_console(),
                        f"waiting for trial {running} to finish (or for its worker to be silent for "
                        f"{opened.dead_after_s} s: then it runs here again)",
                    )
                    waited_for = running
                time.sleep(opened.poll_s)
                continue
            waited_for, ran = "", []
            try:
                run = partial(_end_turn_and_run, turns, plan, budget_left, ran)
                study.optimize(run, n_trials=1, gc_after_trial=True)
            except Exception:  # Optuna cannot tell a trial another process failed meanwhile (its error varies)
                trials = study.get_trials(deepcopy=False)
                if ran and any(ran[0] in retry_history(trial) for trial in trials):
                    raise UserError(
                        f"trial {first_attempt(trials[ran[0]])}: failed by another process while this one trained it "
                        f"(no heartbeat of this process reached the database for {opened.dead_after_s} s), its "
                        "values queued to run again; this process stops. On a flaky network, raise sweep.dead_after_s"
                    ) from None
                raise
        finally:
            if turns.is_locked:  # no trial started
                turns.release()


def _end_turn_and_run(
    turns: FileLock, plan: SweepPlan, budget_left: float | None, ran: list[int], trial: optuna.Trial
) -> tuple[float, ...]:
    turns.release()  # the trial is in the study: other processes count it from now on
    ran.append(trial.number)
    return run_trial(plan, trial, budget_left)


def _budget_left(plan: SweepPlan, study: optuna.Study) -> float | None:
    """Grams the next trial may spend: the sweep's budget less every trial's so far, failed ones included
    (the attempts at one set of values share a run folder: their grams are counted once)."""
    if plan.config.max_co2_g is None:
        return None
    spent = sum(grams for group in attempts(study).values() if (grams := attempt_grams(group)) is not None)
    return plan.config.max_co2_g - spent
