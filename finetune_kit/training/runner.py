"""load → setup → train → save. Knows no task by name: everything task-shaped comes from `Task`."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from datasets import DatasetDict
from peft import PeftModel
from transformers import (
    EarlyStoppingCallback,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)

from finetune_kit.config.recipe import Recipe
from finetune_kit.data import load_data
from finetune_kit.emissions import EmissionsBudget, EmissionsRecord, RunTracker, sum_processes, sum_records
from finetune_kit.errors import UserError
from finetune_kit.hub.card import write_model_card
from finetune_kit.hub.push import push_after_training
from finetune_kit.models import base_model_id, load_tokenizer, resolve_checkpoint
from finetune_kit.models.adapters import parameter_counts, save_adapter_extras
from finetune_kit.models.checkpoints import LINEAGE_FILE
from finetune_kit.models.tokenizer_training import train_tokenizer
from finetune_kit.runs import RunFolder
from finetune_kit.tasks import Task, build_task
from finetune_kit.training.arguments import build_training_arguments
from finetune_kit.training.callbacks import EmissionsCallback, JsonLinesLog, Throughput
from finetune_kit.training.precision import resolve_precision


@dataclass
class Prepared:
    """Everything checked and loaded before a run folder may be created."""

    recipe: Recipe
    task: Task
    data: DatasetDict
    tokenizer: PreTrainedTokenizerBase


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    emissions: EmissionsRecord | None
    is_main: bool = True  # False in the other ranks of a distributed run: they print nothing


def prepare(recipe: Recipe) -> Prepared:
    """Load and check data and tokenizer: bad input fails here, before anything is written."""
    task = build_task(recipe)
    data = load_data(recipe.data, recipe.training.seed)
    task.inspect(data)
    if recipe.tokenizer is not None:  # a new model: its vocabulary is learned from the training texts
        tokenizer = train_tokenizer(recipe.tokenizer, task.tokenizer_texts(data["train"]), recipe.training.max_length)
    else:
        tokenizer = load_tokenizer(recipe.model)
    return Prepared(recipe, task, data, tokenizer)


def train(recipe: Recipe, *, resume: bool = False, overwrite: bool = False) -> RunResult:
    """One run, in one process or as one rank of several (torchrun / accelerate launch): every
    rank trains and measures its emissions; only the main one writes the run folder."""
    prepared = prepare(recipe)
    task, tokenizer = prepared.task, prepared.tokenizer
    set_seed(recipe.training.seed)  # the new head's initialisation is part of the run's seed
    model = task.build_model(tokenizer)
    precision = resolve_precision(recipe.training.precision)
    args = build_training_arguments(recipe.training, task, RunFolder(recipe.run_dir).checkpoints, precision)
    is_main = args.process_index == 0
    with args.main_process_first(desc="run folder"):
        run = (
            RunFolder.begin(recipe.run_dir, resume=resume, overwrite=overwrite)
            if is_main
            else RunFolder(recipe.run_dir)
        )
    checkpoint = run.last_checkpoint() if resume else None
    if is_main:
        _record_recipe(run, recipe, resume)
        if checkpoint is not None:
            _drop_log_after(run.path(RunFolder.LOG), _checkpoint_step(checkpoint))

    with args.main_process_first(desc="tokenizing"):  # rank 0 fills the datasets cache, the rest read it
        features = task.preprocess(prepared.data, tokenizer)
    emissions = _emissions_callback(recipe, run, args)
    log = JsonLinesLog(run.path(RunFolder.LOG))
    callbacks: list[Any] = [Throughput(), log, *task.training_callbacks(log.write)]
    if emissions:
        callbacks.append(emissions)
    if recipe.training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(recipe.training.early_stopping_patience))
    trainer = task.trainer_class(
        model=model,
        args=args,
        train_dataset=features["train"],
        eval_dataset=features["validation"],
        processing_class=tokenizer,
        data_collator=task.collator(tokenizer),
        compute_metrics=task.compute_metrics,
        preprocess_logits_for_metrics=task.logits_for_metrics,
        callbacks=callbacks,
    )
    if task.evaluate_before_training and checkpoint is None:
        baseline = _without_prefix(trainer.evaluate(metric_key_prefix="before"), "before")
        if is_main:
            run.write_json(RunFolder.BASELINE, baseline)
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    metrics = _final_metrics(trainer, task, features, output.metrics, model, precision)
    if is_main and run.path(RunFolder.BASELINE).is_file():
        metrics["before_training"] = run.read_json(RunFolder.BASELINE)
    if emissions and emissions.stopped:
        metrics["stopped_on_budget"] = emissions.stopped
    if is_main:
        metrics |= task.final_results(model, tokenizer)
    trainer.save_model(str(run.path(RunFolder.MODEL)))  # every rank calls it; the main one writes
    trainer.accelerator.wait_for_everyone()  # all emission readings are on disk past this point
    record = _total_emissions(run)
    if not is_main:
        return RunResult(recipe.run_dir, metrics, record, is_main=False)
    _save(run, recipe, task, model, metrics, record)
    run_dir = run.finalize()
    if recipe.hub is not None:
        push_after_training(run_dir, recipe.hub)
    return RunResult(run_dir, metrics, record)


def _record_recipe(run: RunFolder, recipe: Recipe, resume: bool) -> None:
    """The resolved recipe is saved first; a resume must use the same one."""
    resolved = yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    saved = run.path(RunFolder.RECIPE)
    if resume and saved.is_file():
        before = yaml.safe_load(saved.read_text())
        changed = [key for key, value in recipe.model_dump(mode="json").items() if before.get(key) != value]
        if changed:
            raise UserError(
                f"{changed[0]}: differs from the recipe the interrupted run started with ({saved}); "
                "resume with the same recipe, or start over with --overwrite"
            )
        return
    saved.write_text(resolved, encoding="utf-8")


def _checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def _drop_log_after(log: Path, step: int) -> None:
    """Steps after the resumed checkpoint are trained again; their old log lines would be doubles."""
    if log.is_file():
        lines = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= step]
        log.write_text("".join(line + "\n" for line in lines))


def _emissions_callback(recipe: Recipe, run: RunFolder, args: TrainingArguments) -> EmissionsCallback | None:
    if not recipe.emissions.enabled:
        return None
    session = [uuid.uuid4().hex[:12]]
    if args.world_size > 1:
        torch.distributed.broadcast_object_list(session, src=0)  # one session id for all ranks

    def save_reading(record: EmissionsRecord) -> None:
        run.save_emissions_reading(session[0], args.process_index, record.to_dict())

    return EmissionsCallback(
        RunTracker(recipe.emissions, recipe.name or "run", one_of_several_processes=args.world_size > 1),
        save_reading,
        budget=EmissionsBudget.from_config(recipe.emissions),
        earlier=_total_emissions(run),
    )


def _total_emissions(run: RunFolder) -> EmissionsRecord | None:
    """Processes of a session add up side by side, sessions (resumes) one after the other."""
    sessions = [
        sum_processes([EmissionsRecord.from_dict(r) for r in readings])
        for readings in run.emissions_readings().values()
    ]
    return sum_records(sessions) if sessions else None


def _final_metrics(
    trainer: Trainer,
    task: Task,
    features: DatasetDict,
    train_metrics: dict[str, float],
    model: PreTrainedModel,
    precision: str,
) -> dict[str, Any]:
    metrics: dict[str, Any] = {"task": task.name, "main_metric": task.main_metric}
    for split in ("validation", "test"):
        if split in features:
            metrics[split] = _without_prefix(task.evaluate_split(trainer, features[split], split), split)
    metrics["train"] = _without_prefix(train_metrics, "train")
    metrics["train"]["steps"] = trainer.state.global_step
    runtime = metrics["train"].get("runtime")
    if runtime:
        metrics["train"]["tokens_per_second"] = round(trainer.state.num_input_tokens_seen / runtime, 1)
    metrics["best_checkpoint_step"] = (
        _checkpoint_step(Path(trainer.state.best_model_checkpoint)) if trainer.state.best_model_checkpoint else None
    )
    metrics["model"] = {**parameter_counts(model), "precision": precision}
    return metrics


def _without_prefix(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {key.removeprefix(f"{prefix}_"): value for key, value in metrics.items()}


def _save(
    run: RunFolder,
    recipe: Recipe,
    task: Task,
    model: PreTrainedModel | PeftModel,
    metrics: dict[str, Any],
    record: EmissionsRecord | None,
) -> None:
    model_dir = run.path(RunFolder.MODEL)
    base_model = base_model_id(recipe.model.weights_from)
    (model_dir / LINEAGE_FILE).write_text(json.dumps({"base_model": base_model}))
    if isinstance(model, PeftModel) and recipe.model.weights_from:
        save_adapter_extras(model, model_dir, base_model or resolve_checkpoint(recipe.model.checkpoint))
    if record is not None:
        metrics["emissions_g"] = record.emissions_g
        run.write_json(RunFolder.EMISSIONS, record.to_dict())
    run.write_json(RunFolder.METRICS, metrics)
    write_model_card(run.partial, recipe, task)
