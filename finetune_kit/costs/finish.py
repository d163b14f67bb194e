"""What the end of a run will still cost, for a budget check that must stop training early enough: after the stop
come one last evaluation and save, the final validation and test passes, the task's last generation and the saved
model. A check that ignored them stopped a 0.03 g demo run at 0.035 g that then ended at 0.052 g."""

from __future__ import annotations

import math
import time
from typing import Any

from datasets import DatasetDict
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from finetune_kit.costs.prediction import FinishSeconds
from finetune_kit.emissions import EmissionsRecord


class FinishCost(TrainerCallback):
    """Seconds still to spend if training stopped after the next step, turned into grams and kWh at this run's own
    energy per second so far.

    The seconds come from the calibration when the run has one (a budgeted run calibrates before training; a
    resumed one keeps its first session's figures). Otherwise they are learned here: each evaluation and checkpoint
    of this run is timed from the step before it (an evaluation's time includes the samples a task generates at
    it), and before the first evaluation, a training step x the validation batches stands in for one, a rough prior.
    """

    def __init__(self, calibrated: FinishSeconds | None, validation_batches: int, test_share: float) -> None:
        self.calibrated = calibrated
        self.validation_batches = validation_batches
        self.test_share = test_share  # test rows per validation row: a test pass in validation passes
        self._mark: tuple[float, str] | None = None  # (time, event) of the latest step, evaluation or save
        self._step_total, self._steps = 0.0, 0
        self._evaluation: float | None = None
        self._checkpoint: float | None = None

    @classmethod
    def for_run(cls, data: DatasetDict, args: TrainingArguments, estimate: dict[str, Any] | None) -> FinishCost:
        calibrated = FinishSeconds.from_dict(estimate["finish_seconds"]) if estimate else None
        validation = len(data["validation"])
        batches = math.ceil(validation / (args.per_device_eval_batch_size * args.world_size))
        return cls(calibrated, batches, len(data["test"]) / validation if "test" in data else 0.0)

    def reserve(
        self, reading: EmissionsRecord, args: TrainingArguments, state: TrainerState, control: TrainerControl
    ) -> tuple[float, float]:
        """Grams and kWh (this process's) to keep in hand at this step: one more step, with the evaluation and
        checkpoint due at this one, then the end of the run."""
        seconds = self._end_seconds(args) + self._next_step_seconds(args, state, control)
        if reading.duration_s <= 0 or reading.energy_kwh <= 0:
            return 0.0, 0.0
        kwh = seconds * reading.energy_kwh / reading.duration_s
        return kwh * reading.emissions_g / reading.energy_kwh, kwh

    def _step(self) -> float:
        if self.calibrated is not None:
            return self.calibrated.step
        return self._step_total / self._steps if self._steps else 0.0

    def _evaluation_seconds(self) -> float:
        if self.calibrated is not None:
            return self.calibrated.evaluation
        return self._evaluation if self._evaluation is not None else self._step() * self.validation_batches

    def _checkpoint_seconds(self) -> float:
        if self.calibrated is not None:
            return self.calibrated.checkpoint
        return self._checkpoint or 0.0

    def _end_seconds(self, args: TrainingArguments) -> float:
        if self.calibrated is not None:
            return self.calibrated.end
        evaluations = int(args.eval_strategy != "no") + 1 + self.test_share  # the last one, the final ones
        saves = int(args.save_strategy != "no") + 1  # the last checkpoint, the model (about a checkpoint's time)
        return evaluations * self._evaluation_seconds() + saves * self._checkpoint_seconds()

    def _next_step_seconds(self, args: TrainingArguments, state: TrainerState, control: TrainerControl) -> float:
        epoch_ends = state.epoch is not None and math.isclose(state.epoch, round(state.epoch))
        evaluates = control.should_evaluate or (args.eval_strategy == "epoch" and epoch_ends)
        saves = control.should_save or (args.save_strategy == "epoch" and epoch_ends)
        return self._step() + evaluates * self._evaluation_seconds() + saves * self._checkpoint_seconds()

    # -- learning what this run's steps, evaluations and saves take --------------------------------------------

    def on_train_begin(self, args, state, control, **kw):
        self._mark = (time.perf_counter(), "begin")

    def on_step_end(self, args, state, control, **kw):
        now = time.perf_counter()
        if self._mark is not None and self._mark[1] != "begin":  # the first step also sets the loop up
            self._step_total += now - self._mark[0]
            self._steps += 1
        self._mark = (now, "step")

    def on_evaluate(self, args, state, control, **kw):
        now = time.perf_counter()
        if self._mark is not None and self._mark[1] == "step":  # in training, right after its step
            self._evaluation = now - self._mark[0]
            self._mark = (now, "evaluate")

    def on_save(self, args, state, control, **kw):
        now = time.perf_counter()
        if self._mark is not None and self._mark[1] in ("step", "evaluate"):
            self._checkpoint = now - self._mark[0]
            self._mark = (now, "save")

    def on_train_end(self, args, state, control, **kw):
        self._mark = None
