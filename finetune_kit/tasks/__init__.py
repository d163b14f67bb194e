"""The task registry: a new task is its recipe class in `finetune_kit.config`, one module here and one line below."""

from __future__ import annotations

from finetune_kit.config.recipe import Recipe
from finetune_kit.errors import RecipeError
from finetune_kit.tasks.base import EndsTrainingEarly, SamplesDuringTraining, StreamedTraining, Task
from finetune_kit.tasks.causal_lm import CausalLmTask
from finetune_kit.tasks.classification import ClassificationTask
from finetune_kit.tasks.denoising import DenoisingTask
from finetune_kit.tasks.embedding import EmbeddingTask
from finetune_kit.tasks.grpo import GrpoTask
from finetune_kit.tasks.instruction import InstructionTuningTask
from finetune_kit.tasks.masked_lm import MaskedLmTask
from finetune_kit.tasks.preference import PreferenceTask
from finetune_kit.tasks.reward_model import RewardModelTask
from finetune_kit.tasks.setfit import SetFitTask
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
    RewardModelTask.name: RewardModelTask,
    GrpoTask.name: GrpoTask,
    EmbeddingTask.name: EmbeddingTask,
    SetFitTask.name: SetFitTask,
}


def build_task(recipe: Recipe) -> Task:
    """The task a validated recipe names: validation has refused any other name (`config.tasks`)."""
    return TASKS[recipe.task](recipe)


def require_streams(task: Task) -> None:
    """`data.streaming` only for a task that trains from a stream: one line naming the task and those that do."""
    if not isinstance(task, StreamedTraining):
        streaming = [name for name, cls in TASKS.items() if issubclass(cls, StreamedTraining)]
        raise RecipeError(
            f"data.streaming: the {task.name} task cannot train from a stream (tasks that can: "
            f"{', '.join(streaming)}); remove data.streaming"
        )


__all__ = [
    "TASKS",
    "EndsTrainingEarly",
    "SamplesDuringTraining",
    "StreamedTraining",
    "Task",
    "build_task",
    "require_streams",
]
