"""The task registry: a new task is one module plus one line here."""

from __future__ import annotations

import difflib

from finetune_kit.config.recipe import Recipe
from finetune_kit.errors import RecipeError
from finetune_kit.tasks.base import SamplesDuringTraining, Task
from finetune_kit.tasks.causal_lm import CausalLmTask
from finetune_kit.tasks.classification import ClassificationTask
from finetune_kit.tasks.denoising import DenoisingTask
from finetune_kit.tasks.instruction import InstructionTuningTask
from finetune_kit.tasks.masked_lm import MaskedLmTask
from finetune_kit.tasks.preference import PreferenceTask
from finetune_kit.tasks.summarization import SummarizationTask
from finetune_kit.tasks.token_classification import NerTask
from finetune_kit.tasks.translation import TranslationTask

TASKS: dict[str, type[Task]] = {
    ClassificationTask.name: ClassificationTask,
    NerTask.name: NerTask,
    MaskedLmTask.name: MaskedLmTask,
    CausalLmTask.name: CausalLmTask,
    TranslationTask.name: TranslationTask,
    SummarizationTask.name: SummarizationTask,
    DenoisingTask.name: DenoisingTask,
    InstructionTuningTask.name: InstructionTuningTask,
    PreferenceTask.name: PreferenceTask,
}


def task_class_for(name: object, source: str = "recipe") -> type[Task]:
    if not isinstance(name, str) or not name:
        raise RecipeError(f"{source}: task: required; one of {', '.join(TASKS)}")
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known tasks: {', '.join(TASKS)}"
        raise RecipeError(f"{source}: task: unknown task '{name}'; {hint}")
    return TASKS[name]


def build_task(recipe: Recipe) -> Task:
    return task_class_for(recipe.task)(recipe)


__all__ = ["TASKS", "SamplesDuringTraining", "Task", "build_task", "task_class_for"]
