"""The one place a Trainer is built (training and `eval` alike) and its metrics are read back."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from datasets import Dataset
from peft import PeftModel
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.integrations import get_reporting_integration_callbacks

from finetune_kit.tasks import Task


def build_trainer(
    task: Task,
    args: TrainingArguments,
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    train_dataset: Dataset | None = None,
    eval_dataset: Dataset | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> Trainer:
    """The task's Trainer class with `args` (from `build_training_arguments`), its collator and its
    metrics, which get the tokenizer passed rather than left behind by preprocessing."""
    # Metrics from logits, unless the task's evaluation needs the loss alone (and no logits are built).
    metric_hooks = (
        {}
        if args.prediction_loss_only
        else {
            "compute_metrics": partial(task.compute_metrics, tokenizer=tokenizer),
            "preprocess_logits_for_metrics": task.logits_for_metrics,
        }
    )
    setup = task.trainer_setup()
    trainer = setup.trainer_class(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=task.collator(tokenizer),
        callbacks=list(callbacks),
        **metric_hooks,
        **setup.trainer_kwargs,
    )
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; the toolkit's console shows them readably
    # transformers puts its reporters (TensorBoard, MLflow, trackio) before the callbacks it is given: they go last,
    # so they log what the toolkit's callbacks add to each log (tokens/s, grams CO2eq and kWh so far).
    for reporter in get_reporting_integration_callbacks(args.report_to):
        trainer.add_callback(trainer.pop_callback(reporter))
    return trainer


def evaluate(trainer: Trainer, rows: Dataset | None, split: str) -> dict[str, Any]:
    """Metrics of one split, named without Trainer's `<split>_` prefix."""
    return without_prefix(trainer.evaluate(rows, metric_key_prefix=split), split)


def without_prefix(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Trainer prefixes every metric with the split (`eval_accuracy`); results files do not."""
    return {key.removeprefix(f"{prefix}_"): value for key, value in metrics.items()}
