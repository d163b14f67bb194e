"""A budgeted run is estimated before it trains: one whose estimate exceeds its budget stops before anything is
written (unless forced), and the one that trains keeps the estimate and the calibration's data and energy. This
module returns values; the train command prints the estimate's line."""

from __future__ import annotations

import logging
import os

from finetune_kit.config.recipe import EmissionsConfig
from finetune_kit.costs.calibrated import Calibrated
from finetune_kit.costs.prediction import Estimate, predict
from finetune_kit.emissions import EmissionsBudget, EmissionsRecord
from finetune_kit.errors import UserError
from finetune_kit.estimate.calibration import DEFAULT_STEPS, calibrate
from finetune_kit.progress import SILENT, Progress
from finetune_kit.training import Prepared

logger = logging.getLogger("finetune_kit")


def budgeted(emissions: EmissionsConfig) -> bool:
    return emissions.enabled and EmissionsBudget.from_config(emissions) is not None


def estimate_run(
    prepared: Prepared, steps: int = DEFAULT_STEPS, progress: Progress = SILENT
) -> tuple[Estimate, EmissionsRecord]:
    """The estimate of `finetune-kit estimate`, and what its calibration cost. A budgeted `train` calibrates
    again before training, so for a budgeted recipe that calibration is part of the estimated run."""
    calibration = calibrate(prepared, steps, progress)
    spent = calibration.spent if budgeted(prepared.recipe.emissions) else None
    return predict(calibration.plan, calibration.units, spent), calibration.spent


def calibrate_budgeted(prepared: Prepared, progress: Progress = SILENT) -> Calibrated | None:
    """Calibrate and estimate a run whose recipe sets emissions.max_co2_g or max_kwh (the calibration's own cost
    included); None for a run without a budget, or one of several processes."""
    if not budgeted(prepared.recipe.emissions):
        return None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logger.warning("emissions budget: no estimate before a run of several processes; it stops on its own readings")
        return None
    return calibrate_run(prepared, progress)


def calibrate_run(prepared: Prepared, progress: Progress = SILENT) -> Calibrated:
    """Calibrate and estimate a run that is to train next: it reuses the data the calibration tokenized, and the
    calibration's energy counts in the run's (a budgeted run; one waiting for its start window)."""
    calibration = calibrate(prepared, progress=progress)
    estimate = predict(calibration.plan, calibration.units, calibration.spent)
    return Calibrated(estimate, calibration.spent.to_dict(), calibration.features)


def refuse_over_budget(estimate: Estimate, emissions: EmissionsConfig, *, force: bool) -> None:
    """Refuse a run, before anything is written, when its estimate exceeds the budget, unless `force`."""
    for field, limit, value, unit in estimate.against(emissions):
        if value > limit and not force:
            raise UserError(
                f"estimate {value:.3g} {unit} exceeds emissions.{field} {limit:g} {unit}; "
                "raise the budget, shorten the run, or pass --force"
            )
