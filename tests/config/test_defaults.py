"""What a recipe resolves to where it leaves values unset, and the one-line errors of its sections,
through the public entry points only (`load_recipe`, `validate_recipe`): no training, no model.

The adapter values are written out here on purpose: a change to a family's default changes what
every recipe without that value trains with, and should be seen in review."""

from pathlib import Path

import pytest
import yaml

from finetune_kit.config import load_recipe
from finetune_kit.config.loading import validate_recipe
from finetune_kit.errors import RecipeError
from tests.builders import REPO

pytestmark = pytest.mark.unit

FULL_FINE_TUNING_RATE = 5e-5
DATA = {
    "classification": {"train": "t.jsonl"},
    "ner": {"train": "t.jsonl"},
    "causal-lm": {"train": "t.txt"},
    "translation": {"train": "t.jsonl", "source_lang": "en", "target_lang": "de"},
    "summarization": {"train": "t.jsonl"},
    "masked-lm": {"train": "t.txt"},
}
# task: (learning rate, r, alpha, modules trained in full) of a bare `peft: {method: lora}`
ADAPTER_DEFAULTS = {
    "classification": (1e-3, 8, 16, []),
    "ner": (3e-3, 16, 32, []),
    "causal-lm": (2e-3, 16, 32, []),
    "translation": (2e-3, 16, 32, ["lm_head"]),
    "summarization": (2e-3, 16, 32, ["lm_head"]),
    "masked-lm": (1e-3, 8, 16, []),
}


def raw_recipe(task: str = "classification", peft: dict | None = None, **training) -> dict:
    """The smallest valid recipe of `task`; its files need not exist to be validated."""
    raw = {"task": task, "model": {"checkpoint": "x"}, "data": dict(DATA[task]), "training": training}
    return raw | ({"peft": peft} if peft else {})


def written(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def error_of(raw: dict) -> str:
    with pytest.raises(RecipeError) as caught:
        validate_recipe(raw)
    message = str(caught.value)
    assert "\n" not in message  # one line, whatever the mistake
    return message


@pytest.mark.parametrize("task", list(ADAPTER_DEFAULTS))
def test_a_bare_lora_section_takes_its_task_familys_values(task, tmp_path):
    rate, r, alpha, in_full = ADAPTER_DEFAULTS[task]
    recipe = load_recipe(written(tmp_path, raw_recipe(task, {"method": "lora"})))
    assert recipe.training.learning_rate == rate
    assert (recipe.peft.r, recipe.peft.alpha, recipe.peft.target_modules) == (r, alpha, "all-linear")
    assert recipe.peft.modules_to_save == in_full
    full = load_recipe(written(tmp_path, raw_recipe(task)))
    assert full.training.learning_rate == FULL_FINE_TUNING_RATE and full.peft is None


def test_the_resolved_recipe_states_every_default_and_reads_back_the_same(tmp_path):
    """What a run folder's recipe.yaml holds: the values the run trained with, not the blanks of the file."""
    recipe = load_recipe(written(tmp_path, raw_recipe("ner", {"method": "lora"})))
    resolved = recipe.model_dump(mode="json")
    assert resolved["training"]["learning_rate"] == 3e-3
    assert {key: resolved["peft"][key] for key in ("r", "alpha", "target_modules")} == {
        "r": 16,
        "alpha": 32,
        "target_modules": "all-linear",
    }
    assert validate_recipe(resolved) == recipe


def test_recipe_values_win_and_alpha_follows_a_set_rank(tmp_path):
    path = written(tmp_path, raw_recipe("classification", {"method": "lora", "target_modules": ["query"]}))
    recipe = load_recipe(path, ["peft.r=4", "training.learning_rate=2e-4"])
    assert (recipe.peft.r, recipe.peft.alpha, recipe.peft.target_modules) == (4, 8, ["query"])
    assert recipe.training.learning_rate == 2e-4


def test_an_adapter_method_without_a_rank_gets_none_filled_in(tmp_path):
    ia3 = load_recipe(written(tmp_path, raw_recipe("ner", {"method": "ia3"})))
    assert (ia3.peft.r, ia3.peft.alpha, ia3.training.learning_rate) == (None, None, 3e-3)


def test_set_adds_a_peft_section_the_file_lacks_and_its_family_rate_follows(tmp_path):
    path = written(tmp_path, raw_recipe("causal-lm"))
    assert load_recipe(path).training.learning_rate == FULL_FINE_TUNING_RATE
    recipe = load_recipe(path, ["peft.method=lora"])
    assert recipe.peft.method == "lora" and recipe.training.learning_rate == 2e-3


def test_set_turns_a_saved_full_fine_tuning_recipe_into_an_adapter_run(tmp_path):
    """A run folder's recipe.yaml says `peft: null`; `--set peft.method=lora` on it makes a LoRA recipe."""
    path = written(tmp_path, {**raw_recipe("ner"), "peft": None})
    recipe = load_recipe(path, ["peft.method=lora"])
    assert recipe.peft.method == "lora" and recipe.training.learning_rate == 3e-3


def test_a_typo_in_a_set_key_is_named_with_its_did_you_mean(tmp_path):
    with pytest.raises(RecipeError) as caught:
        load_recipe(written(tmp_path, raw_recipe()), ["emissions.enabld=false"])
    assert str(caught.value).endswith("emissions.enabld: unknown key; did you mean 'enabled'?")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (raw_recipe(peft={"method": "lora", "target_module": "auto"}), "peft.target_module: unknown key; did you mean"),
        (raw_recipe(peft={"method": "lora", "r": "eight"}), "peft.r: Input should be a valid integer"),
        (raw_recipe(epochs="three"), "training.epochs: Input should be a valid number"),
        (raw_recipe(peft={"method": "lorra"}), "peft.method: Input should be 'lora', 'ia3'"),
        ({**raw_recipe(), "data": {"text_column": "t"}}, "data.train: required field is missing"),
    ],
    ids=["unknown-peft-key", "rank-as-text", "epochs-as-text", "unknown-method", "no-train-split"],
)
def test_a_mistake_in_a_section_is_one_line_naming_the_dotted_field(raw, message):
    assert message in error_of(raw)


def test_steps_evaluation_is_accepted_once_it_has_a_step_count():
    assert "training: eval_strategy 'steps' needs training.eval_steps" in error_of(raw_recipe(eval_strategy="steps"))
    recipe = validate_recipe(raw_recipe(eval_strategy="steps", eval_steps=10))
    assert (recipe.training.eval_strategy, recipe.training.eval_steps) == ("steps", 10)


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda path: path.stem)
def test_each_bundled_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.task and recipe.data.train and recipe.name
