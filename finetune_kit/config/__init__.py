"""Recipes: YAML files turned into typed, validated configuration. Every schema lives here, and this
package imports nothing else of finetune_kit but its errors."""

from finetune_kit.config.loading import load_recipe, load_recipe_file, validate_recipe
from finetune_kit.config.recipe import (
    CardConfig,
    DataConfig,
    DataSource,
    EmissionsConfig,
    HubConfig,
    HubDataSource,
    ModelConfig,
    Recipe,
    TrainingConfig,
)
from finetune_kit.config.tasks import RECIPE_CLASSES, AnyRecipe

__all__ = [
    "RECIPE_CLASSES",
    "AnyRecipe",
    "CardConfig",
    "DataConfig",
    "DataSource",
    "EmissionsConfig",
    "HubConfig",
    "HubDataSource",
    "ModelConfig",
    "Recipe",
    "TrainingConfig",
    "load_recipe",
    "load_recipe_file",
    "validate_recipe",
]
