"""Every task a recipe can name has its Task, and the other way round: a recipe class added to the
config's union without a task (or a task without a schema) fails here, not in a user's run."""

import pytest

from finetune_kit.config import RECIPE_CLASSES
from finetune_kit.config.loading import validate_recipe
from finetune_kit.tasks import TASKS, build_task

pytestmark = pytest.mark.unit

DATA = {"translation": {"source_lang": "en", "target_lang": "de"}}
SECTIONS = {"grpo": {"grpo": {"rewards": [{"name": "label_match"}]}}}  # sections a task requires


def test_the_task_registry_and_the_recipe_union_name_the_same_tasks():
    assert list(TASKS) == list(RECIPE_CLASSES)


@pytest.mark.parametrize("name", list(RECIPE_CLASSES))
def test_a_validated_recipe_builds_the_task_of_its_name(name):
    recipe = validate_recipe(
        {
            "task": name,
            "model": {"checkpoint": "m"},
            "data": {"train": "t.jsonl", **DATA.get(name, {})},
            **SECTIONS.get(name, {}),
        }
    )
    assert type(recipe) is RECIPE_CLASSES[name] and build_task(recipe).name == name
