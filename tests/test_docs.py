"""The documentation that is generated from the code stays in step with it."""

from __future__ import annotations

import pytest

from tests.scripts import load_script


@pytest.mark.unit
def test_recipe_reference_page_is_current():
    """docs/reference/recipe.md is what the schema's field descriptions give today."""
    reference = load_script("recipe_reference")
    committed = reference.PAGE.read_text(encoding="utf-8") if reference.PAGE.exists() else ""
    assert committed == reference.render(), (
        "docs/reference/recipe.md is stale: run `python scripts/recipe_reference.py`"
    )


@pytest.mark.unit
def test_recipe_reference_lists_every_task_and_field():
    reference = load_script("recipe_reference")
    page = reference.render()
    for task, recipe in reference.recipe_classes().items():
        assert f"## `{task}`" in page
        for name, field in recipe.model_fields.items():
            assert f"`{field.alias or name}`" in page, f"{task}: {name} missing from the reference"
