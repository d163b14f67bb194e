"""A budgeted run is estimated before it trains: one whose estimate exceeds its budget stops before anything is
written (unless forced), and the one that trains keeps the estimate and the calibration's data and energy."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from datasets import DatasetDict

from finetune_kit.config.recipe import EmissionsConfig
from finetune_kit.console import get_console, say
from finetune_kit.emissions import EmissionsBudget, EmissionsRecord
from finetune_kit.errors import UserError
from finetune_kit.estimate.calibration import DEFAULT_STEPS, calibrate
from finetune_kit.estimate.prediction import Estimate, predict
from finetune_kit.estimate.report import summary_line
from finetune_kit.runs import Layout, RunFolder
from finetune_kit.training.runner import Prepared

logger = logging.getLogger("finetune_kit")
CALIBRATION_SESSION = "calibration"  # its emissions reading, beside the training sessions'


@dataclass(frozen=True)
class Calibrated:
    """What a budgeted run takes from its calibration."""

    estimate: Estimate
    spent: dict[str, Any]  # the calibration's emissions record: part of what the run cost
    features: DatasetDict  # tokenized once

    def keep_in(self, folder: RunFolder) -> None:
        """The calibration's energy counts in the run's emissions (a reading of its own, not a session of training:
        `sessions` keeps counting resumes). The estimate is saved for a resume's budget checks."""
        folder.save_emissions_reading(CALIBRATION_SESSION, 0, {**self.spent, "sessions": 0})
        folder.files.write_json(Layout.ESTIMATE, self.estimate.to_dict())


def budgeted(emissions: EmissionsConfig) -> bool:
    return emissions.enabled and EmissionsBudget.from_config(emissions) is not None


def estimate_run(prepared: Prepared, steps: int = DEFAULT_STEPS) -> tuple[Estimate, EmissionsRecord]:
    """The estimate of `finetune-kit estimate`, and what its calibration cost. A budgeted `train` calibrates
    again before training, so for a budgeted recipe that calibration is part of the estimated run."""
    calibration = calibrate(prepared, steps)
    spent = calibration.spent if budgeted(prepared.recipe.emissions) else None
    return predict(calibration.plan, calibration.units, spent), calibration.spent


def estimate_within_budget(prepared: Prepared, *, force: bool) -> Calibrated | None:
    """Calibrate and estimate a run whose recipe sets emissions.max_co2_g or max_kwh; refuse it, before anything
    is written, when the estimate (the calibration's own cost included) exceeds the budget, unless `force`."""
    emissions = prepared.recipe.emissions
    if not budgeted(emissions):
        return None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logger.warning("emissions budget: no estimate before a run of several processes; it stops on its own readings")
        return None
    calibration = calibrate(prepared)
    estimate = predict(calibration.plan, calibration.units, calibration.spent)
    say(get_console(), summary_line(estimate, emissions))
    for field, limit, value, unit in estimate.against(emissions):
        if value > limit and not force:
            raise UserError(
                f"estimate {value:.3g} {unit} exceeds emissions.{field} {limit:g} {unit}; "
                "raise the budget, shorten the run, or pass --force"
            )
    return Calibrated(estimate, calibration.spent.to_dict(), calibration.features)
