"""The training core, one run in named phases: prepare → open the run → build → train → finish.

A prepared run becomes a trained run folder; what surrounds it (the budget's estimate, the model card, the push,
the console) is the train command's (`finetune_kit.commands.train`), given in as values and callbacks.
Knows no task by name: everything task-shaped comes from `Task`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
from datasets import DatasetDict
from peft import PeftModel
from transformers import (
    EarlyStoppingCallback,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from finetune_kit.config.recipe import Recipe
from finetune_kit.costs.calibrated import Calibrated
from finetune_kit.costs.finish import FinishCost
from finetune_kit.data import Stream, load_data, load_streamed
from finetune_kit.emissions import EmissionsBudget, EmissionsRecord, RunTracker
from finetune_kit.errors import DataError
from finetune_kit.models import base_model_id, load_tokenizer, resolve_checkpoint
from finetune_kit.models.adapters import parameter_counts, save_adapter_extras
from finetune_kit.models.building import build_model
from finetune_kit.models.checkpoints import starting_weights_note
from finetune_kit.models.tokenizer_training import train_tokenizer
from finetune_kit.progress import SILENT, Progress
from finetune_kit.runs import Layout, RunFiles, RunFolder
from finetune_kit.runs.folder import checkpoint_step, read_lineage
from finetune_kit.tasks import EndsTrainingEarly, SamplesDuringTraining, Task, build_task, require_streams
from finetune_kit.training.arguments import SHUFFLED_GROUPS, build_training_arguments, require_compiling_pays
from finetune_kit.training.batching import LengthGroupedBatches
from finetune_kit.training.callbacks import EmissionsCallback, JsonLinesLog, RunStopped, StopOnRequest, Throughput
from finetune_kit.training.mfu import matmul_peak_flops, model_flops_utilization
from finetune_kit.training.precision import Resolved, autocast, resolve_precision
from finetune_kit.training.ranks import (
    EmissionReadings,
    agree_on_checkpoint,
    drop_machine_copy,
    save_on_machines_without_the_folder,
    warn_when_sharding_is_dropped,
)
from finetune_kit.training.tracking import ExperimentTracking
from finetune_kit.training.trainer import build_trainer, evaluate, without_prefix

logger = logging.getLogger("finetune_kit")


@dataclass
class Prepared:
    """Everything checked and loaded before a run folder may be created."""

    recipe: Recipe
    task: Task
    data: DatasetDict  # with `data.streaming`, train holds the stream's first rows
    tokenizer: PreTrainedTokenizerBase
    stream: Stream | None = None  # data.train, read as training goes (`data.streaming`)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    emissions: EmissionsRecord | None
    is_main: bool = True  # False in the other ranks of a distributed run: they print nothing


# Builds the Trainer callback that shows training to a person (the console's bars), given the run's grams so far.
Display = Callable[[Callable[[], float | None]], TrainerCallback]
# What the caller adds to the finished run's files before the folder moves into place (the model card).
Completion = Callable[[RunFiles, Prepared], None]


@dataclass(frozen=True)
class RunHooks:
    """What the caller brings to a run: how it reaches the person waiting, and what it adds to the run folder. None
    of it by default: such a run shows nothing and writes only what the core writes."""

    progress: Progress = SILENT  # tokenize and generate phases, the trackers' note
    display: Display | None = None  # training and evaluation
    complete: Completion | None = None  # the caller's files, in the run folder before it moves into place


NO_HOOKS = RunHooks()


@dataclass
class OpenRun:
    """A run between its phases: what `open_run` set up and the later phases share."""

    prepared: Prepared
    model: PreTrainedModel | PeftModel
    args: TrainingArguments
    precision: Resolved
    folder: RunFolder
    checkpoint: Path | None
    emissions: EmissionsCallback | None
    is_main: bool
    tracking: ExperimentTracking
    features: DatasetDict | None = None  # set by `build`
    throughput: Throughput = field(default_factory=Throughput)
    train_metrics: dict[str, Any] = field(default_factory=dict)  # set by `fit`
    estimate: dict[str, Any] | None = None  # a budgeted run's pre-run estimate, for metrics.json
    hooks: RunHooks = field(default_factory=RunHooks)

    def mixed_precision(self) -> AbstractContextManager:
        """The run's precision for the task's own forward passes (its generation before and after training)."""
        return autocast(self.precision, next(self.model.parameters()).device)


def prepare(recipe: Recipe) -> Prepared:
    """Load and check data and tokenizer: bad input fails here, before anything is written."""
    require_compiling_pays(recipe.training)
    task = build_task(recipe)
    # A checkpoint's tokenizer loads first: a missing checkpoint is told before the data is read.
    tokenizer = load_tokenizer(recipe.model) if recipe.tokenizer is None else None
    if recipe.data.streaming:
        require_streams(task)
        data, stream = load_streamed(recipe.data, recipe.training.seed)
    else:
        data, stream = load_data(recipe.data, recipe.training.seed), None
    task.inspect(data)
    if tokenizer is None:  # a new model: its vocabulary is learned from the training texts
        tokenizer = train_tokenizer(recipe.tokenizer, task.tokenizer_texts(data["train"]), recipe.training.max_length)
    task.prepare_tokenizer(tokenizer)
    return Prepared(recipe, task, data, tokenizer, stream)


def train(
    prepared: Prepared,
    *,
    resume: bool = False,
    overwrite: bool = False,
    calibrated: Calibrated | None = None,
    extra_callbacks: Sequence[TrainerCallback] = (),
    hooks: RunHooks = NO_HOOKS,
) -> RunResult:
    """One prepared run, in one process or as one rank of several (torchrun / accelerate launch): every
    rank trains and measures its emissions; only the main one writes the run folder. `calibrated` is a
    budgeted run's estimate made before it; `extra_callbacks` join the run's own (a sweep's pruning). Training
    stopped by a `StopOnRequest` among them (the CLI's, on SIGTERM) raises `RunStopped`, the folder left partial
    (see `keep_stopped`)."""
    run = open_run(prepared, resume=resume, overwrite=overwrite, calibrated=calibrated, hooks=hooks)
    stops = [callback for callback in extra_callbacks if isinstance(callback, StopOnRequest)]
    with run.tracking:
        trainer = build(run, extra_callbacks)
        fit(run, trainer)
        stopped_at = next((stop.step for stop in stops if stop.step is not None), None)
        if stopped_at is not None:
            keep_stopped(run, stopped_at)
        return finish(run, trainer)


def open_run(
    prepared: Prepared,
    *,
    resume: bool,
    overwrite: bool,
    calibrated: Calibrated | None = None,
    hooks: RunHooks = NO_HOOKS,
) -> OpenRun:
    """The model, the Trainer's arguments and the partial run folder (reopened by a resume); with `calibrated`
    (a budgeted run's estimate), the data it tokenized and the energy it spent."""
    recipe = prepared.recipe
    set_seed(recipe.training.seed)  # the new head's initialisation is part of the run's seed
    model = build_model(recipe, prepared.task.model_head(), prepared.tokenizer)
    precision = resolve_precision(recipe.training.precision)
    args = build_training_arguments(
        recipe.training, prepared.task, RunFolder(recipe.run_dir).checkpoints, precision, run_name=recipe.name or "run"
    )
    is_main = args.process_index == 0
    # Checks the trackers before the folder is made.
    tracking = ExperimentTracking(recipe, is_main=is_main, progress=hooks.progress)
    with args.main_process_first(desc="run folder"):
        folder = (
            RunFolder.begin(recipe.run_dir, resume=resume, overwrite=overwrite)
            if is_main
            else RunFolder(recipe.run_dir)
        )
    save_on_machines_without_the_folder(folder, args)
    checkpoint = folder.last_checkpoint() if resume else None
    if resume:
        agree_on_checkpoint(checkpoint, args, folder.partial)
    if is_main:
        if folder.restarted:
            logger.warning(
                "no complete checkpoint in %s: starting over (energy spent so far still counts)", folder.partial
            )
        folder.record_recipe(recipe.model_dump(mode="json"), resume)
        if checkpoint is not None:
            folder.drop_log_after(checkpoint_step(checkpoint))
        folder.path(Layout.STOPPED).unlink(missing_ok=True)  # a run stopped on request goes on
    estimate = _estimate(folder, calibrated)
    emissions = _emissions_callback(recipe, folder, args, FinishCost.for_run(prepared.data, args, estimate))
    if emissions:
        emissions.start()
    features = calibrated.features if calibrated else None
    return OpenRun(
        prepared,
        model,
        args,
        precision,
        folder,
        checkpoint,
        emissions,
        is_main,
        tracking,
        features,
        estimate=estimate,
        hooks=hooks,
    )


def build(run: OpenRun, extra_callbacks: Sequence[TrainerCallback] = ()) -> Trainer:
    """Tokenized data, callbacks and the Trainer."""
    prepared, recipe = run.prepared, run.prepared.recipe
    rows = sum(len(split) for split in prepared.data.values())
    if run.features is None:  # a budgeted run reuses what its calibration tokenized
        with run.args.main_process_first(desc="tokenizing"), run.hooks.progress.phase("tokenize", total=rows):
            run.features = prepared.task.preprocess(prepared.data, prepared.tokenizer)  # rank 0 fills the cache first
    run.throughput.examples_per_row = prepared.task.examples_per_row(run.features["train"])  # a stream's first rows
    if prepared.stream is not None:
        run.features["train"] = prepared.task.stream_features(prepared.stream, prepared.tokenizer)
    log = JsonLinesLog(run.folder.files.path(Layout.LOG))
    grams_so_far = run.emissions.spent_g if run.emissions else lambda: None
    # Emissions right after throughput: both add to each training log what the log file, console and trackers show.
    emissions = [run.emissions] if run.emissions else []
    display = [run.hooks.display(grams_so_far)] if run.hooks.display else []
    callbacks: list[Any] = [run.throughput, *emissions, log, *display]
    if isinstance(prepared.task, SamplesDuringTraining):
        callbacks += prepared.task.training_callbacks(log.write)
    if recipe.training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(recipe.training.early_stopping_patience))
    if run.emissions and run.emissions.finish:  # last: an evaluation's time then includes the samples after it
        callbacks.append(run.emissions.finish)
    callbacks += extra_callbacks
    return build_trainer(
        prepared.task,
        run.args,
        run.model,
        prepared.tokenizer,
        train_dataset=(
            LengthGroupedBatches(run.features["train"], run.args.per_device_train_batch_size, run.args.seed)
            if run.args.train_sampling_strategy == SHUFFLED_GROUPS and prepared.stream is None
            else run.features["train"]
        ),
        eval_dataset=run.features["validation"],
        callbacks=callbacks,
    )


def fit(run: OpenRun, trainer: Trainer) -> None:
    """The starting point (when the task measures one), then training from the checkpoint if any."""
    warn_when_sharding_is_dropped(trainer)
    task = run.prepared.task
    if task.evaluate_before_training and run.checkpoint is None:
        baseline = evaluate(trainer, None, "before")
        if isinstance(task, SamplesDuringTraining):
            with run.mixed_precision():
                baseline |= task.results_before_training(
                    run.model, run.prepared.tokenizer, run.prepared.data, run.hooks.progress
                )
        if run.is_main:
            run.folder.files.write_json(Layout.BASELINE, baseline)
    if run.emissions and run.emissions.budget:  # MFU's matmul benchmark (cached) now: none of the end's cost unseen
        matmul_peak_flops(run.precision, str(next(run.model.parameters()).device))
    try:
        output = trainer.train(resume_from_checkpoint=str(run.checkpoint) if run.checkpoint else None)
    except DataError as err:  # a bad streamed row: the folder stays partial, this session's energy saved in it
        if run.emissions:
            run.emissions.stop(together=False)  # the other processes, if any, are not at this point
        raise DataError(_own_words(err)) from None
    run.train_metrics = without_prefix(output.metrics, "train")


def _own_words(err: DataError) -> str:
    """A DataError raised in a DataLoader worker (`training.dataloader_workers`) comes back with the worker's
    traceback before its message, as torch re-raises it: the message is then its last line."""
    return str(err).strip().splitlines()[-1].removeprefix(f"{DataError.__module__}.{DataError.__name__}: ")


def finish(run: OpenRun, trainer: Trainer) -> RunResult:
    """Final metrics, the model, emissions, what the caller adds (the card); then the folder moves into place."""
    recipe = run.prepared.recipe
    metrics = _final_metrics(run, trainer)
    trainer.save_model(str(run.folder.files.model_dir))  # every rank calls it; the main one writes
    if run.emissions:
        run.emissions.stop()
    trainer.accelerator.wait_for_everyone()  # all emission readings are on disk past this point
    record = run.folder.total_emissions()
    run.tracking.finish(trainer, record)  # the trackers' stores are still in the partial folder
    if not run.is_main:
        drop_machine_copy(run.folder, run.args)
        return RunResult(recipe.run_dir, metrics, record, is_main=False)
    _save(run, metrics, record)
    return RunResult(run.folder.finalize(), metrics, record)


def keep_stopped(run: OpenRun, step: int) -> NoReturn:
    """Training stopped on request: this session's energy is saved (a resume adds it up) and `stopped.json` says
    when, so readers tell a stopped run from a killed one; the folder stays partial, its checkpoint kept."""
    if run.emissions:
        run.emissions.stop()
    run.folder.files.write_json(Layout.STOPPED, {"step": step, "time": round(time.time(), 3)})
    raise RunStopped(step)


def _emissions_callback(
    recipe: Recipe, folder: RunFolder, args: TrainingArguments, finish: FinishCost
) -> EmissionsCallback | None:
    if not recipe.emissions.enabled:
        return None
    session = [uuid.uuid4().hex[:12]]
    if args.world_size > 1:
        torch.distributed.broadcast_object_list(session, src=0)  # one session id for all ranks

    budget = EmissionsBudget.from_config(recipe.emissions)
    return EmissionsCallback(
        RunTracker(recipe.emissions, recipe.name or "run", one_of_several_processes=args.world_size > 1),
        EmissionReadings(folder, session[0], args),
        budget=budget,
        earlier=folder.total_emissions(),
        save_every_s=recipe.emissions.measure_power_secs,
        finish=finish if budget else None,
    )


def _estimate(folder: RunFolder, calibrated: Calibrated | None) -> dict[str, Any] | None:
    """A budgeted run's estimate: from its calibration, or, on a resume, as its first session saved it."""
    if calibrated is not None:
        calibrated.keep_in(folder)
        return calibrated.estimate.to_dict()
    saved = folder.path(Layout.ESTIMATE)
    return json.loads(saved.read_text()) if saved.is_file() else None


def _final_metrics(run: OpenRun, trainer: Trainer) -> dict[str, Any]:
    task, features = run.prepared.task, run.features
    metrics: dict[str, Any] = {"task": task.name, "main_metric": task.main_metric}
    for split in ("validation", "test"):
        if split in features:
            metrics[split] = evaluate(trainer, features[split], split)
    metrics["train"] = {**run.train_metrics, "steps": trainer.state.global_step, "sample_unit": task.sample_unit}
    if "samples_per_second" in run.train_metrics:  # Trainer counts rows; a packed row holds several examples
        examples_per_second = run.train_metrics["samples_per_second"] * run.throughput.examples_per_row
        metrics["train"]["samples_per_second"] = round(examples_per_second, 3)
    runtime = run.train_metrics.get("runtime")
    if runtime:
        tokens_per_second = (trainer.state.num_input_tokens_seen - run.throughput.tokens_at_start) / runtime
        metrics["train"]["tokens_per_second"] = round(tokens_per_second, 1)
        metrics["train"] |= model_flops_utilization(
            run.model, tokens_per_second, run.precision, devices=run.args.world_size
        )
    if torch.cuda.is_available():  # what a user sizes the next GPU by
        metrics["train"]["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    best = trainer.state.best_model_checkpoint
    metrics["best_checkpoint_step"] = checkpoint_step(Path(best)) if best else None
    metrics["model"] = {**parameter_counts(run.model), "precision": run.precision}
    if note := starting_weights_note(run.prepared.recipe.model.weights_from):
        metrics["model"]["starting_weights"] = note
    metrics |= _why_training_stopped(run, trainer)
    if run.is_main:
        metrics |= _results_beyond_metrics(run)
    return metrics


def _why_training_stopped(run: OpenRun, trainer: Trainer) -> dict[str, Any]:
    """Said in metrics.json, the summary and the card whenever training ended before its plan."""
    if trainer.state.global_step >= trainer.state.max_steps:
        return {}
    reasons: dict[str, Any] = {}
    if run.emissions and run.emissions.stopped:
        reasons["stopped_on_budget"] = run.emissions.stopped
    # The Trainer's own instance: a resume replaces the callback with the one saved in the checkpoint.
    early = next((c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)), None)
    if early and early.early_stopping_patience_counter >= early.early_stopping_patience:
        patience, metric = early.early_stopping_patience, run.prepared.task.main_metric
        reasons["stopped_early"] = {
            "reason": f"early stopping: no better {metric} in {patience} "
            + ("evaluation" if patience == 1 else "evaluations"),
            "step": trainer.state.global_step,
        }
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, EndsTrainingEarly) and callback.stopped:
            reasons["stopped_early"] = callback.stopped
    return reasons


def _results_beyond_metrics(run: OpenRun) -> dict[str, Any]:
    """The starting point measured before training, and sample generations after it."""
    results: dict[str, Any] = {}
    baseline = run.folder.files.path(Layout.BASELINE)
    if baseline.is_file():
        results["before_training"] = json.loads(baseline.read_text())
    task = run.prepared.task
    if isinstance(task, SamplesDuringTraining):
        with run.mixed_precision():
            results |= task.final_results(run.model, run.prepared.tokenizer, run.prepared.data, run.hooks.progress)
    return results


def _main_metric_gain(metrics: dict[str, Any]) -> float:
    """How far training moved the validation main metric from where it started (0 when not measured)."""
    main = metrics["main_metric"]
    before, after = metrics.get("before_training", {}).get(main), metrics.get("validation", {}).get(main)
    return after - before if before is not None and after is not None else 0.0


def _save(run: OpenRun, metrics: dict[str, Any], record: EmissionsRecord | None) -> None:
    recipe, files = run.prepared.recipe, run.folder.files
    base_model = base_model_id(recipe.model.weights_from)
    # The runs this model descends from (pretraining, SFT, ...), each with its emissions, then this one.
    parent = Path(recipe.model.weights_from).expanduser() if recipe.model.weights_from else None
    chain = read_lineage(parent).get("chain", []) if parent and parent.is_dir() else []
    chain.append({"run": recipe.name, "task": recipe.task, "emissions_g": record.emissions_g if record else None})
    (files.model_dir / Layout.LINEAGE).write_text(json.dumps({"base_model": base_model, "chain": chain}))
    if isinstance(run.model, PeftModel) and recipe.model.weights_from:
        save_adapter_extras(run.model, files.model_dir, base_model or resolve_checkpoint(recipe.model.checkpoint))
    if record is not None:
        metrics["emissions_g"] = record.emissions_g
        metrics["energy_kwh"] = record.energy_kwh
        metrics["duration_s"] = round(record.duration_s, 3)
        files.write_json(Layout.EMISSIONS, record.to_dict())
        if run.prepared.task.grams_per_point and (gain := _main_metric_gain(metrics)) > 0:
            metrics["emissions_g_per_point"] = round(record.emissions_g / (100 * gain), 6)
    if run.estimate is not None:  # beside the measured values it predicted
        metrics["estimate"] = run.estimate
    files.write_json(Layout.METRICS, metrics)
    if run.hooks.complete is not None:
        run.hooks.complete(files, run.prepared)
