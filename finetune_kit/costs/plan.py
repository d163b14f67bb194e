"""What a run will do, counted as the Trainer and the runner will do it: optimizer steps, validation passes and
their batches, the test pass, checkpoint saves, and the batches of the task's own generation."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from datasets import DatasetDict
from transformers import Trainer

from finetune_kit.tasks import SamplesDuringTraining, Task
from finetune_kit.tasks.held_out import ScoredReplies


@dataclass(frozen=True)
class Work:
    """Counts of each kind of work in a run, or in the end of one."""

    steps: int = 0
    evaluations: int = 0  # validation passes: before training, during it, and the final one
    eval_batches: int = 0  # per validation pass
    test_batches: int = 0  # the one test pass; 0 without data.test
    generation_batches: int = 0  # the task's own generation (samples, held-out replies), over the whole run
    checkpoints: int = 0
    model_saves: int = 1
    matmul_peaks: int = 1  # the MFU's benchmark, at the end (a budgeted run measures it before training)
    tokenized_rows: int = 0  # 0 when the run reuses the calibration's tokenized data


@dataclass(frozen=True)
class RunPlan:
    """The whole run's work, and what is left to do once a budget stops training (`finish`)."""

    work: Work
    finish: Work
    evaluates_in_training: bool
    saves_in_training: bool
    generation_per_evaluation: int  # batches of samples each evaluation in training generates


def plan_run(trainer: Trainer, task: Task, data: DatasetDict, features: DatasetDict) -> RunPlan:
    """Counts from the Trainer's own arithmetic (`set_initial_training_values`: epochs, max_steps, gradient
    accumulation, rows) and its schedule (DefaultFlowCallback: every eval_steps / save_steps, at each epoch's end,
    and at the last step)."""
    args = trainer.args
    epochs, *_, steps = trainer.set_initial_training_values(args, trainer.get_train_dataloader())
    evaluations = _scheduled(args.eval_strategy, args.eval_steps, steps, epochs)
    checkpoints = _scheduled(args.save_strategy, args.save_steps, steps, epochs)
    test_batches = len(trainer.get_eval_dataloader(features["test"])) if "test" in features else 0
    generation_rounds, generation_at_end, generation_per_evaluation = _generation_rounds(task, data, evaluations)
    per_round = generation_batches_per_round(task, data)
    work = Work(
        steps=steps,
        evaluations=int(task.evaluate_before_training) + evaluations + 1,
        eval_batches=len(trainer.get_eval_dataloader()),
        test_batches=test_batches,
        generation_batches=generation_rounds * per_round,
        checkpoints=checkpoints,
        tokenized_rows=sum(len(split) for split in data.values()),
    )
    # A budget stop ends with one last evaluation and save (when the run has them), then the final passes.
    finish = replace(
        work,
        steps=0,
        evaluations=int(evaluations > 0) + 1,
        generation_batches=generation_at_end * per_round,
        checkpoints=int(checkpoints > 0),
        matmul_peaks=0,
        tokenized_rows=0,
    )
    return RunPlan(work, finish, evaluations > 0, checkpoints > 0, generation_per_evaluation * per_round)


def _scheduled(strategy: str, every: float | None, steps: int, epochs: int) -> int:
    """How many evaluations (or saves) a strategy makes: one per epoch, or one every `every` steps plus one at
    the last step when it is not a multiple."""
    if strategy == "epoch":
        return epochs
    if strategy == "steps" and every:
        interval = math.ceil(steps * every) if every < 1 else int(every)  # below 1: a ratio of the steps
        return math.ceil(steps / interval)
    return 0


def _generation_rounds(task: Task, data: DatasetDict, evaluations: int) -> tuple[int, int, int]:
    """Rounds of the task's own generation over the run, how many of them come at its end, and how many each
    evaluation at a new step triggers. Held-out replies are generated before and after training. Samples for fixed
    prompts follow every evaluation at a new step (`SampleGenerations`) and come once more with the final results:
    at the end, the last evaluation of training (or, without one, the final validation) samples, then the final
    results do."""
    if isinstance(task, ScoredReplies):
        return (int(task.evaluate_before_training) + 1, 1, 0) if "test" in data else (0, 0, 0)
    if isinstance(task, SamplesDuringTraining):
        during = evaluations if evaluations else 1  # without evaluations in training, the final validation samples
        return int(task.evaluate_before_training) + during + 1, 2, 1
    return 0, 0, 0


def generation_batches_per_round(task: Task, data: DatasetDict) -> int:
    """Held-out replies come in batches of generation.batch_size over data.test; samples are one batch of prompts."""
    if isinstance(task, ScoredReplies):
        return math.ceil(len(data["test"]) / task.recipe.generation.batch_size) if "test" in data else 0
    return int(isinstance(task, SamplesDuringTraining))


def one_generation_batch(task: Task, data: DatasetDict, seed: int) -> DatasetDict | None:
    """The raw data one batch of the task's generation reads (`final_results`), or None for a task that does not
    generate on its own (seq2seq tasks generate inside their evaluation batches)."""
    if generation_batches_per_round(task, data) == 0:
        return None
    if isinstance(task, ScoredReplies):
        rows = min(len(data["test"]), task.recipe.generation.batch_size)
        return DatasetDict(test=data["test"].shuffle(seed=seed).select(range(rows)))
    return data
