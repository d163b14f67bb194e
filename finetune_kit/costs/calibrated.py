"""What a budgeted run keeps from the calibration made before it (`finetune_kit.estimate.budget`): the training core
takes it without knowing how it was measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets import DatasetDict

from finetune_kit.costs.prediction import Estimate
from finetune_kit.runs import Layout, RunFolder

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
        folder.save_emissions_reading(CALIBRATION_SESSION, 0, 0, {**self.spent, "sessions": 0})
        folder.files.write_json(Layout.ESTIMATE, self.estimate.to_dict())
