from pathlib import Path

import pytest
import yaml

from finetune_kit.config import load_recipe
from finetune_kit.errors import RecipeError

pytestmark = pytest.mark.unit

BASE = {
    "task": "classification",
    "model": {"checkpoint": "some/model"},
    "data": {"train": "train.csv"},
}


def write(tmp_path: Path, recipe: dict | str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe if isinstance(recipe, str) else yaml.safe_dump(recipe))
    return path


def error_for(tmp_path: Path, recipe: dict | str, overrides: list[str] | None = None) -> str:
    with pytest.raises(RecipeError) as caught:
        load_recipe(write(tmp_path, recipe), overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_fill_in_and_name_comes_from_the_file(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE))
    assert recipe.name == "recipe"
    assert recipe.training.learning_rate == 5e-5
    assert recipe.data.text_column == "text"
    assert recipe.run_dir == Path("runs/recipe")


def test_set_overrides_any_field_with_yaml_typed_values(tmp_path):
    recipe = load_recipe(
        write(tmp_path, BASE),
        ["training.learning_rate=3e-5", "training.group_by_length=false", "data.label_names=[neg, pos]"],
    )
    assert recipe.training.learning_rate == 3e-5
    assert recipe.training.group_by_length is False
    assert recipe.data.label_names == ["neg", "pos"]


def test_unknown_key_suggests_the_close_one(tmp_path):
    message = error_for(tmp_path, {**BASE, "training": {"learning_rat": 1e-4}})
    assert message.endswith("training.learning_rat: unknown key; did you mean 'learning_rate'?")


def test_unknown_key_in_a_task_section(tmp_path):
    message = error_for(tmp_path, {**BASE, "data": {"train": "x.csv", "label_colum": "y"}})
    assert "data.label_colum: unknown key; did you mean 'label_column'?" in message


def test_wrong_type_names_field_and_value(tmp_path):
    message = error_for(tmp_path, {**BASE, "training": {"batch_size": "big"}})
    assert "training.batch_size" in message and "'big'" in message


def test_out_of_range_value(tmp_path):
    message = error_for(tmp_path, BASE, ["training.learning_rate=-1"])
    assert "training.learning_rate: Input should be greater than 0" in message


def test_missing_required_field(tmp_path):
    message = error_for(tmp_path, {"task": "classification", "data": {"train": "x.csv"}})
    assert "model: required field is missing" in message


def test_unknown_task_suggests(tmp_path):
    message = error_for(tmp_path, {**BASE, "task": "clasification"})
    assert "task: unknown task 'clasification'; did you mean 'classification'?" in message


def test_bad_override_syntax(tmp_path):
    message = error_for(tmp_path, BASE, ["training.learning_rate"])
    assert "expected dotted.key=value" in message


def test_invalid_yaml_names_the_line(tmp_path):
    message = error_for(tmp_path, "task: classification\nmodel: [unclosed\n")
    assert "invalid YAML at line" in message


def test_steps_strategy_needs_a_step_count(tmp_path):
    message = error_for(tmp_path, BASE, ["training.eval_strategy=steps"])
    assert "eval_steps" in message


def test_relative_data_paths_fall_back_to_the_recipe_folder(tmp_path, monkeypatch):
    (tmp_path / "train.csv").write_text("text,label\na,b\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(write(tmp_path, BASE))
    assert Path(recipe.data.train) == (tmp_path / "train.csv").resolve()
