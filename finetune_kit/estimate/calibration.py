"""A dry run that measures: the run's own data, model and Trainer (the runner's `open_run` and `build`), built in a
scratch folder, train a few dozen real steps under codecarbon; one evaluation, one batch of the task's generation,
one checkpoint, one model save and the matmul benchmark behind the run's MFU are timed too. Nothing is written
under runs/ or the recipe's output_dir."""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from datasets import DatasetDict
from transformers import Trainer, TrainerCallback

from finetune_kit.config.recipe import Recipe
from finetune_kit.costs.plan import RunPlan, one_generation_batch, plan_run
from finetune_kit.costs.prediction import JOULES_PER_KWH, Rate, UnitCosts
from finetune_kit.emissions import EmissionsRecord
from finetune_kit.errors import RecipeError
from finetune_kit.progress import SILENT, Progress
from finetune_kit.training.mfu import matmul_peak_flops
from finetune_kit.training.runner import OpenRun, Prepared, build, open_run

DEFAULT_STEPS = 20
WARMUP_STEPS = 3  # the first steps allocate, and compile where torch.compile is on: timed apart
EVALUATION_BATCHES = 3
# codecarbon turns CPU load (or a GPU's counter) into power between two readings: over less than a second, the
# reading says more about when the load was sampled than about the phase, and the calibration's mean power is used.
MIN_READING_S = 1.0


@dataclass(frozen=True)
class Calibration:
    plan: RunPlan
    units: UnitCosts
    spent: EmissionsRecord  # what the calibration itself cost
    features: DatasetDict  # the tokenized data: a run after the calibration reuses it


@dataclass
class Span:
    """One measured phase of the calibration."""

    seconds: float = 0.0
    kwh: float = 0.0

    def rate(self, units: float, mean_watts: float) -> Rate:
        """Per unit of work, at the phase's own mean power when its reading is long enough to mean something,
        else at the mean power of the whole calibration."""
        watts = self.kwh * JOULES_PER_KWH / self.seconds if self.seconds >= MIN_READING_S else mean_watts
        return Rate(self.seconds / units if units else 0.0, watts)


class Meter:
    """Time and codecarbon's energy so far, read together (the accelerator's queued work finished first)."""

    def __init__(self, read: Callable[[], EmissionsRecord | None]) -> None:
        self.read = read

    def now(self) -> tuple[float, float]:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        reading = self.read()
        return time.perf_counter(), reading.energy_kwh if reading else 0.0

    @staticmethod
    def between(start: tuple[float, float], end: tuple[float, float]) -> Span:
        return Span(end[0] - start[0], end[1] - start[1])

    @contextmanager
    def span(self) -> Iterator[Span]:
        start, measured = self.now(), Span()
        yield measured
        end = self.now()
        measured.seconds, measured.kwh = end[0] - start[0], end[1] - start[1]


def calibrate(prepared: Prepared, steps: int = DEFAULT_STEPS, progress: Progress = SILENT) -> Calibration:
    """Measure the recipe's run on this machine: `steps` timed training steps after the warm-up ones. `progress`
    shows the calibration as one phase; the run inside it shows nothing (its bars and lines would describe a run
    that is not happening)."""
    if prepared.stream is not None:
        raise RecipeError(
            "data.streaming: estimate, emissions budgets and --start-when count a run's work from its whole train "
            "split, which a stream does not give; remove data.streaming (or emissions.max_co2_g / max_kwh)"
        )
    with (
        tempfile.TemporaryDirectory(prefix="finetune-kit-estimate-") as scratch,
        progress.phase("calibrate", total=steps, unit="timed steps"),
    ):
        calibration = _calibrate(prepared, Path(scratch), steps)
    gc.collect()  # the calibration's model and optimizer go before the run builds its own
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return calibration


def _calibrate(prepared: Prepared, scratch: Path, steps: int) -> Calibration:
    run = open_run(replace(prepared, recipe=_scratch_recipe(prepared.recipe, scratch)), resume=False, overwrite=False)
    try:
        spans, plan = _measure(prepared, run, scratch, steps)
    finally:
        run.emissions.stop()  # codecarbon's sampling thread must not outlive a failed calibration
    spent = run.folder.total_emissions()
    watts = spent.energy_kwh * JOULES_PER_KWH / spent.duration_s if spent.duration_s else 0.0
    probe, evaluation_watts = spans.probe, spans.evaluation.rate(1, watts).watts
    units = UnitCosts(
        first_steps=probe.first.rate(1, watts),
        warmup_steps=probe.warmup,
        step=probe.window.rate(len(probe.step_seconds), watts),
        step_spread=_spread(probe.step_seconds),
        evaluation=Rate(max(spans.evaluation.seconds - spans.batches * spans.batch_seconds, 0.0), evaluation_watts),
        eval_batch=Rate(spans.batch_seconds, evaluation_watts),
        generation_batch=spans.generation.rate(1, watts),
        checkpoint=probe.checkpoint.rate(1, watts),
        model_save=spans.model_save.rate(1, watts),
        matmul_peak=spans.peak.rate(1, watts),
        tokenized_row=spans.tokenize.rate(plan.work.tokenized_rows, watts),
        grams_per_kwh=spent.emissions_g / spent.energy_kwh if spent.energy_kwh else 0.0,
    )
    return Calibration(plan, units, spent, run.features)


@dataclass
class Spans:
    """What `_measure` timed."""

    tokenize: Span
    probe: StepProbe
    evaluation: Span
    batches: int  # in the timed validation pass
    batch_seconds: float
    generation: Span
    model_save: Span
    peak: Span


def _measure(prepared: Prepared, run: OpenRun, scratch: Path, steps: int) -> tuple[Spans, RunPlan]:
    meter = Meter(run.emissions.tracker.read)
    with meter.span() as tokenize:
        trainer = build(run)
    plan = plan_run(trainer, prepared.task, prepared.data, run.features)
    warmup = min(WARMUP_STEPS, plan.work.steps - 1)
    probe = StepProbe(meter, warmup, min(steps, plan.work.steps - warmup), plan.saves_in_training)
    trainer.add_callback(probe)
    probe.start()
    trainer.train()
    trainer.remove_callback(probe)
    evaluation, batches, batch_seconds = _time_evaluation(trainer, run, meter)
    generation = Span()
    if sample := one_generation_batch(prepared.task, prepared.data, prepared.recipe.training.seed):
        with meter.span() as generation, run.mixed_precision():
            prepared.task.final_results(run.model, prepared.tokenizer, sample)
    with meter.span() as model_save:
        trainer.save_model(str(scratch / "model"))
    with meter.span() as peak:  # the MFU's matmul benchmark every run ends with (cached per process)
        matmul_peak_flops(run.precision, str(next(run.model.parameters()).device))
    return Spans(tokenize, probe, evaluation, batches, batch_seconds, generation, model_save, peak), plan


def _scratch_recipe(recipe: Recipe, scratch: Path) -> Recipe:
    """The same run in a scratch folder, with codecarbon on, no budget to stop it and no experiment trackers."""
    emissions = recipe.emissions.model_copy(update={"enabled": True, "max_co2_g": None, "max_kwh": None})
    training = recipe.training.model_copy(update={"report_to": []})
    return recipe.model_copy(update={"output_dir": scratch / "run", "emissions": emissions, "training": training})


def _time_evaluation(trainer: Trainer, run: OpenRun, meter: Meter) -> tuple[Span, int, float]:
    """One validation pass over a few random batches, after an untimed one (the first pass sets evaluation up,
    and a task that samples at each evaluation samples there). Returns the pass, its batches, and the mean seconds
    of its later batches (the first one carries the pass's own start-up); the rest of the pass is its fixed part:
    loader, metrics, logging."""
    validation = run.features["validation"]
    rows = min(len(validation), EVALUATION_BATCHES * run.args.per_device_eval_batch_size)
    subset = validation.shuffle(seed=run.args.seed).select(range(rows))
    trainer.evaluate(subset)
    batches = BatchTimes()
    trainer.add_callback(batches)
    with meter.span() as evaluation:
        trainer.evaluate(subset)
    trainer.remove_callback(batches)
    gaps = [later - earlier for earlier, later in zip(batches.ends, batches.ends[1:], strict=False)]
    count = len(batches.ends)
    return evaluation, count, statistics.fmean(gaps) if gaps else evaluation.seconds / max(count, 1)


def _spread(step_seconds: list[float]) -> tuple[float, float]:
    if len(step_seconds) < 2:
        return 1.0, 1.0
    first, _, third = statistics.quantiles(step_seconds, n=4)
    mean = statistics.fmean(step_seconds)
    return min(first / mean, 1.0), max(third / mean, 1.0)  # a skewed few steps must not put the mean outside


class StepProbe(TrainerCallback):
    """Times the warm-up steps, then each timed step, then one checkpoint save, and stops training there. No
    evaluation or save falls inside the calibration's steps."""

    def __init__(self, meter: Meter, warmup: int, timed: int, save: bool) -> None:
        self.meter, self.warmup, self.timed, self.save = meter, warmup, timed, save
        self.first, self.window, self.checkpoint = Span(), Span(), Span()
        self.step_seconds: list[float] = []
        self._started = self._window_start = self._save_start = (0.0, 0.0)
        self._last = 0.0

    def start(self) -> None:
        """Called just before training: the first steps' time includes the Trainer setting training up."""
        self._started = self._window_start = self.meter.now()
        self._last = self._started[0]

    def on_step_end(self, args, state, control, **kw):
        control.should_evaluate = control.should_save = False
        if state.global_step == self.warmup:
            self._window_start = self.meter.now()
            self.first = self.meter.between(self._started, self._window_start)
            self._last = self._window_start[0]
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        if state.global_step > self.warmup:
            self.step_seconds.append(now - self._last)
        self._last = now
        if state.global_step == self.warmup + self.timed:
            self._save_start = self.meter.now()
            self.window = self.meter.between(self._window_start, self._save_start)
            control.should_training_stop = True
            control.should_log = False
            control.should_save = self.save

    def on_epoch_end(self, args, state, control, **kw):
        control.should_evaluate = control.should_save = False

    def on_save(self, args, state, control, **kw):
        self.checkpoint = self.meter.between(self._save_start, self.meter.now())


class BatchTimes(TrainerCallback):
    """When each evaluation batch ended."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_prediction_step(self, args, state, control, **kw):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())
