"""`finetune-kit train` as a library call: prepare → estimate within the budget (unless resuming) → wait for the
forecast's lowest-intensity window (`--start-when`) → the training core → the model card → the push. The CLI and
every trial of a sweep call it."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from transformers import TrainerCallback

from finetune_kit.commands.console_progress import ConsoleProgress
from finetune_kit.commands.estimate_report import summary_line
from finetune_kit.config.recipe import Recipe
from finetune_kit.console import ConsoleReport, duration_text
from finetune_kit.costs.prediction import Estimate
from finetune_kit.errors import UserError
from finetune_kit.estimate.budget import calibrate_budgeted, calibrate_run, refuse_over_budget
from finetune_kit.estimate.forecast import ForecastRow, ForecastTooShort, StartPlan, plan_start, read_forecast
from finetune_kit.hub.card import write_model_card
from finetune_kit.hub.push import push_after_training
from finetune_kit.runs import Layout, RunFiles
from finetune_kit.training import Prepared, RunHooks, RunResult, prepare
from finetune_kit.training import train as train_prepared

WAIT_NOTE_EVERY_S = 900.0  # while waiting for the window, the time left is said this often
NOW_S = 1.0  # a window that opens sooner than this starts now


class WaitCancelled(Exception):
    """Ctrl-C while waiting for the window: nothing was trained or written."""


def train(
    recipe: Recipe,
    *,
    resume: bool = False,
    overwrite: bool = False,
    force: bool = False,
    extra_callbacks: Sequence[TrainerCallback] = (),
    start_when: Path | None = None,
) -> RunResult:
    """One run, shown on the console. A run with an emissions budget is estimated first and refused when the
    estimate exceeds it, unless `force`; `extra_callbacks` join the run's own (a sweep's pruning). With
    `start_when` (a forecast CSV) the run is estimated too, and starts in the window of its estimated duration with
    the lowest mean intensity, which metrics.json and the card record. The run folder moves into place with its
    model card; a recipe with `hub:` is then pushed (main process only)."""
    schedule = _read_schedule(start_when, resume) if start_when is not None else None
    report = ConsoleReport()
    prepared = prepare(recipe)
    if resume:
        calibrated = None
    elif schedule is not None:
        calibrated = calibrate_run(prepared, report)
    else:
        calibrated = calibrate_budgeted(prepared, report)
    if calibrated is not None:
        report.note(summary_line(calibrated.estimate, recipe.emissions))
        refuse_over_budget(calibrated.estimate, recipe.emissions, force=force)
    window = None
    if schedule is not None and calibrated is not None:  # a scheduled run is always calibrated
        plan, window = _plan(*schedule, calibrated.estimate, report)
        _wait_until(plan.best.start, report)
    hooks = RunHooks(progress=report, display=ConsoleProgress, complete=partial(_complete, start_window=window))
    result = train_prepared(
        prepared,
        resume=resume,
        overwrite=overwrite,
        # A run that measures nothing keeps nothing of its calibration (its energy would become the run's).
        calibrated=calibrated if recipe.emissions.enabled else None,
        extra_callbacks=extra_callbacks,
        hooks=hooks,
    )
    if window is not None:
        result.metrics["start_window"] = window
    if result.is_main and recipe.hub is not None:
        push_after_training(result.run_dir, recipe.hub)
    return result


def _read_schedule(path: Path, resume: bool) -> tuple[list[ForecastRow], str]:
    """The forecast and its name, read before anything is loaded: a bad file fails at once."""
    if resume:
        raise UserError("--start-when plans a new run; a resumed run goes on at once: drop --start-when or --resume")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--start-when waits in one process: wait for the window, then launch the processes")
    return read_forecast(path), path.name


def _ahead(estimate: Estimate) -> tuple[float, float]:
    """Seconds and kWh the run has still to spend: its calibration is spent already."""
    phases = [p for p in estimate.phases if not p.spent]
    return sum(p.seconds for p in phases), sum(p.kwh for p in phases)


def _plan(
    forecast: list[ForecastRow], name: str, estimate: Estimate, report: ConsoleReport
) -> tuple[StartPlan, dict[str, Any]]:
    """The window to start in, said in one line, and as metrics.json keeps it."""
    seconds, kwh = _ahead(estimate)
    now = datetime.now(timezone.utc)
    try:
        plan = plan_start(forecast, seconds, now)
    except ForecastTooShort as short:
        raise UserError(
            f"{name} covers at most {duration_text(short.covered_s)} from now (it ends {_when(short.end)}); the run "
            f"is estimated at {duration_text(seconds)}: give a forecast that reaches further"
        ) from None
    wait = (plan.best.start - now).total_seconds()
    start = "now" if wait < NOW_S else f"{_when(plan.best.start)} (in {duration_text(wait)})"
    # Compared with starting now, or at the forecast's first time when it begins later.
    baseline = "now" if (plan.earliest.start - now).total_seconds() < NOW_S else f"at {_when(plan.earliest.start)}"
    report.note(
        f"start: {start}, the lowest-intensity window of {name} for the run's estimated {duration_text(seconds)}: "
        f"{plan.best.g_per_kwh:.4g} g CO2eq/kWh vs {plan.earliest.g_per_kwh:.4g} {baseline}; "
        f"{plan.saved_g(kwh):.3g} g CO2eq saved at the forecast's intensities"
    )
    record = {
        "forecast": name,
        "start": plan.best.start.isoformat(timespec="seconds"),
        "end": plan.best.end.isoformat(timespec="seconds"),
        "g_per_kwh": round(plan.best.g_per_kwh, 2),
        "baseline": baseline,
        "baseline_g_per_kwh": round(plan.earliest.g_per_kwh, 2),
        "estimated_s": round(seconds, 1),
        "saved_g": float(f"{plan.saved_g(kwh):.4g}"),
    }
    return plan, record


def _when(moment: datetime) -> str:
    """In UTC, as forecasts are: the line also says how long the wait is."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _wait_until(start: datetime, report: ConsoleReport) -> None:
    """Sleep until the window opens, saying the time left every so often. Ctrl-C or SIGTERM (the studio's Stop, a
    scheduler taking the machine back) ends the wait, before anything is written; the stop SIGTERM asks for during
    training would only come once the window opens."""
    cancellable = threading.current_thread() is threading.main_thread()  # where Python runs signal handlers
    previous = signal.getsignal(signal.SIGTERM)
    if cancellable:
        signal.signal(signal.SIGTERM, _cancel)
    try:
        while (left := (start - datetime.now(timezone.utc)).total_seconds()) > 0:
            if left >= NOW_S:
                report.note(f"waiting for the window: {duration_text(left)} left; Ctrl-C cancels")
            time.sleep(min(left, WAIT_NOTE_EVERY_S))
    except KeyboardInterrupt:
        raise WaitCancelled from None
    finally:
        if cancellable:
            signal.signal(signal.SIGTERM, previous)


def _cancel(signum: int, frame: FrameType | None) -> None:
    raise WaitCancelled


def _complete(files: RunFiles, prepared: Prepared, start_window: dict[str, Any] | None = None) -> None:
    """The card is written from the run's own files, in the folder before it moves into place; a scheduled run's
    window joins metrics.json first."""
    if start_window is not None:
        files.write_json(Layout.METRICS, {**files.metrics(), "start_window": start_window})
    write_model_card(files, prepared.recipe, prepared.task)
