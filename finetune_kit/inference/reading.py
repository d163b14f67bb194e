"""A finished run's files, recipe and task, without its weights."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig

from finetune_kit.config.recipe import Recipe
from finetune_kit.runs import FinishedRun
from finetune_kit.tasks import Task, build_task


def read_run(run_dir: Path) -> tuple[FinishedRun, Recipe, Task]:
    """A finished run folder's files, recipe and task, with what the task learned (labels) read
    back from the saved config: all that `card` needs, without loading any weights."""
    files = FinishedRun.open(run_dir)
    recipe = files.recipe()
    task = build_task(recipe)
    task.adopt_trained_config(AutoConfig.from_pretrained(str(files.model_dir)))
    return files, recipe, task
