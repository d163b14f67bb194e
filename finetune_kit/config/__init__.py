"""Recipes: YAML files turned into typed, validated configuration."""

from finetune_kit.config.loading import load_recipe, load_recipe_file
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

__all__ = [
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
]
