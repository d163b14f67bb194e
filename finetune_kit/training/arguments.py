"""Recipe training section → transformers TrainingArguments (the one place they are built)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import TrainingArguments

from finetune_kit.config.recipe import TrainingConfig
from finetune_kit.errors import RecipeError, first_line
from finetune_kit.tasks.base import Task
from finetune_kit.training.precision import Resolved

SHUFFLED_GROUPS = "sequential"  # the order LengthGroupedBatches gives the dataset: grouped batches, shuffled


def _sampling(group_by_length: bool) -> str:
    """Length-grouped batches in shuffled order in one process. With several processes (torchrun and
    accelerate set WORLD_SIZE) transformers' own grouping stays until the shuffled order is shown to
    train as well there: our 2-process toy test (50 steps) passed with it on fewer seeds."""
    if not group_by_length:
        return "random"
    return SHUFFLED_GROUPS if int(os.environ.get("WORLD_SIZE", "1")) == 1 else "group_by_length"


def require_compiling_pays(config: TrainingConfig) -> None:
    """torch.compile is refused on a CPU, where it cannot pay: on the demo's training step (MiniLM, batch 32,
    bf16) one compile took 18 s from a warm cache and 85 s from a cold one, for steps at best 2 % faster after
    it (bench/compile.py), and other batch shapes compile again."""
    if config.torch_compile and not torch.cuda.is_available():
        raise RecipeError(
            "training.torch_compile: on a CPU compiling costs more than it saves (the demo's step: 18-85 s to "
            "compile, at best 2 % faster after); remove it, or train on a GPU"
        )


def require_launcher_precision_agrees(precision: Resolved) -> None:
    """An accelerate config's `mixed_precision` reaches Trainer through the launcher's environment and wins over a
    recipe that asks for neither bf16 nor fp16: the run would train in one precision and report the other."""
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launched in ("bf16", "fp16") and launched != precision:
        raise RecipeError(
            f"training.precision: the run resolves to {precision}, but the accelerate config says mixed_precision: "
            f"{launched}; set one to the other (mixed_precision: 'no' lets the recipe decide)"
        )


def build_training_arguments(
    config: TrainingConfig, task: Task, checkpoints: Path, precision: Resolved, *, run_name: str | None = None
) -> TrainingArguments:
    """`run_name` names a training run: it reports to the recipe's trackers (`training.report_to`) under that
    name. Without one (evaluating a finished run) nothing is reported."""
    require_launcher_precision_agrees(precision)
    setup = task.trainer_setup()
    save_strategy = config.resolved_save_strategy
    keep_best = config.eval_strategy != "no" and save_strategy != "no"
    arguments = dict(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size or config.batch_size * 2,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        eval_strategy=config.eval_strategy,
        eval_steps=config.eval_steps,
        save_strategy=save_strategy,
        save_steps=config.save_steps or config.eval_steps,
        save_total_limit=2 if keep_best else 1,
        load_best_model_at_end=keep_best,
        metric_for_best_model=task.main_metric if keep_best else None,
        greater_is_better=task.greater_is_better if keep_best else None,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        train_sampling_strategy=_sampling(config.group_by_length),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=config.gradient_checkpointing,
        torch_compile=config.torch_compile,
        include_num_input_tokens_seen="non_padding",
        # Each process's loss is its own batch's mean, which DDP averages: with the default (True) the Trainer
        # multiplies every loss by the process count, right only for models that divide by the count across all
        # processes, not for heads that take a plain mean (sequence and token classification): their logged loss
        # and gradients came out doubled on two processes.
        average_tokens_across_devices=False,
        restore_callback_states_from_checkpoint=True,  # early stopping's patience survives a resume
        dataloader_num_workers=config.dataloader_workers,
        remove_unused_columns=setup.remove_unused_columns,
        disable_tqdm=True,  # the toolkit's console shows progress (finetune_kit.console)
        report_to=(config.report_to or "none") if run_name else "none",
        run_name=run_name,
        project=run_name or "finetune-kit",  # trackio's project: one per run, like MLflow's experiment
        trackio_static_space_id=False,  # trackio stays local: no Space on the Hub, not even when pushing
    )
    try:
        return setup.arguments_class(**arguments | setup.arguments)  # the task's own settings win
    except ValueError as err:
        raise RecipeError(f"training: {first_line(err, 300)}") from None
