"""Every task's recipe class, by the name a recipe's `task:` gives: one discriminated union."""

from __future__ import annotations

import difflib
from typing import Annotated, get_args

from pydantic import Field, TypeAdapter

from finetune_kit.config.chat import PreferenceRecipe, SftRecipe
from finetune_kit.config.embedding import EmbeddingRecipe, SetFitRecipe
from finetune_kit.config.encoders import ClassificationRecipe, MaskedLmRecipe, NerRecipe
from finetune_kit.config.generative import (
    CausalLmRecipe,
    DenoisingRecipe,
    SummarizationRecipe,
    TranslationRecipe,
)
from finetune_kit.config.recipe import Recipe
from finetune_kit.config.rl import GrpoRecipe, RewardRecipe
from finetune_kit.errors import RecipeError

AnyRecipe = Annotated[
    ClassificationRecipe
    | NerRecipe
    | MaskedLmRecipe
    | CausalLmRecipe
    | TranslationRecipe
    | SummarizationRecipe
    | DenoisingRecipe
    | SftRecipe
    | PreferenceRecipe
    | RewardRecipe
    | GrpoRecipe
    | EmbeddingRecipe
    | SetFitRecipe,
    Field(discriminator="task"),
]
RECIPE_ADAPTER: TypeAdapter[Recipe] = TypeAdapter(AnyRecipe)
# task name → recipe class, read off the union (each class's `task: Literal["name"]`) so the two cannot disagree
RECIPE_CLASSES: dict[str, type[Recipe]] = {
    get_args(cls.model_fields["task"].annotation)[0]: cls for cls in get_args(get_args(AnyRecipe)[0])
}


def recipe_class_for(name: object, source: str = "recipe") -> type[Recipe]:
    """The recipe class of a task name, or one line naming the known tasks."""
    if not isinstance(name, str) or not name:
        raise RecipeError(f"{source}: task: required; one of {', '.join(RECIPE_CLASSES)}")
    if name not in RECIPE_CLASSES:
        close = difflib.get_close_matches(name, RECIPE_CLASSES, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known tasks: {', '.join(RECIPE_CLASSES)}"
        raise RecipeError(f"{source}: task: unknown task '{name}'; {hint}")
    return RECIPE_CLASSES[name]
