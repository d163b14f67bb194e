"""Ways to get a recipe, its data or its checkpoint wrong: each exits 2 with one line naming the
culprit and the fix, and none leaves a run folder behind."""

import pytest
import torch

from tests.builders import classification_recipe, write_jsonl

pytestmark = pytest.mark.unit


def set_path(recipe: dict, dotted: str, value) -> dict:
    node = recipe
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return recipe


CASES = {
    "typo in a key": (
        lambda r, tmp: set_path(r, "training.lerning_rate", 1e-4),
        "training.lerning_rate: unknown key; did you mean 'learning_rate'?",
    ),
    "negative learning rate": (
        lambda r, tmp: set_path(r, "training.learning_rate", -0.1),
        "training.learning_rate: Input should be greater than 0",
    ),
    "batch size is text": (
        lambda r, tmp: set_path(r, "training.batch_size", "large"),
        "training.batch_size: Input should be a valid integer",
    ),
    "unknown task": (lambda r, tmp: set_path(r, "task", "classify"), "task: unknown task 'classify'"),
    "missing train file": (
        lambda r, tmp: set_path(r, "data.train", str(tmp / "missing.csv")),
        "data.train: file not found",
    ),
    "text column absent": (
        lambda r, tmp: set_path(r, "data.text_column", "sentence"),
        "data.text_column: column 'sentence' not found in the train data; columns are: text, label",
    ),
    "label column absent": (
        lambda r, tmp: set_path(r, "data.label_column", "sentiment"),
        "data.label_column: column 'sentiment' not found",
    ),
    "validation label unseen in train": (
        lambda r, tmp: set_path(
            r, "data.validation", str(write_jsonl(tmp / "v.jsonl", [{"text": "good", "label": "mixed"}]))
        ),
        "data.validation: row 1 has label 'mixed', which the train data does not have",
    ),
    "malformed json lines": (
        lambda r, tmp: set_path(
            r, "data.train", str(_write(tmp / "bad.jsonl", '{"text": "a", "label": "pos"}\n{oops\n'))
        ),
        "data.train: bad.jsonl line 2 is not valid JSON (Expecting property name enclosed in double quotes); "
        "fix or remove that line",
    ),
    "empty train file": (
        lambda r, tmp: set_path(r, "data.train", str(_write(tmp / "empty.csv", ""))),
        "data.train: empty.csv is empty (no rows); give a file with at least one row",
    ),
    "csv header without rows": (
        lambda r, tmp: set_path(r, "data.validation", str(_write(tmp / "header.csv", "text,label\n"))),
        "data.validation: header.csv is empty (no rows)",
    ),
    "train file not UTF-8": (
        lambda r, tmp: set_path(
            r, "data.train", str(_write(tmp / "latin1.csv", "text,label\ngood,pos\ncafé,neg\n", "latin-1"))
        ),
        "data.train: latin1.csv line 3 is not UTF-8 text; save the file as UTF-8",
    ),
    "named .gz but not compressed": (
        lambda r, tmp: set_path(r, "data.train", str(_write(tmp / "train.jsonl.gz", '{"text": "a", "label": "pos"}'))),
        "data.train: train.jsonl.gz is not gz-compressed; remove the .gz ending from its name",
    ),
    "checkpoint folder without a model": (
        lambda r, tmp: set_path(r, "model.checkpoint", str(_mkdir(tmp / "empty-model"))),
        "model.checkpoint: cannot load",
    ),
    "checkpoint folder missing": (
        lambda r, tmp: set_path(r, "model.checkpoint", str(tmp / "runs" / "earlier" / "model")),
        "/runs/earlier/model not found; check the path",
    ),
    "adapter on random weights": (
        lambda r, tmp: set_path(set_path(r, "model.random_init", True), "peft", {"method": "lora"}),
        "peft: an adapter trains on top of pretrained weights and model.random_init starts from random ones; "
        "remove the peft section",
    ),
    "empty label": (
        lambda r, tmp: set_path(
            r,
            "data.train",
            str(write_jsonl(tmp / "t.jsonl", [{"text": "good", "label": "pos"}, {"text": "x", "label": ""}])),
        ),
        "data.train: row 2 has no label in column 'label'",
    ),
}


if not torch.cuda.is_available():
    CASES["torch.compile on a CPU"] = (
        lambda r, tmp: set_path(r, "training.torch_compile", True),
        "training.torch_compile: on a CPU compiling costs more than it saves",
    )


def _write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


def _mkdir(path):
    path.mkdir()
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line_and_no_run_folder(case, tiny_bert, toy_data, tmp_path, write_recipe, cli):
    mutate, expected = CASES[case]
    run_dir = tmp_path / "runs" / "bad"
    recipe = mutate(classification_recipe(tiny_bert, toy_data, run_dir), tmp_path)
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2
    assert len(result.error_lines) == 1, result.stderr
    assert expected in result.error_lines[0]
    assert not (tmp_path / "runs").exists()


def test_missing_recipe_file(cli, tmp_path):
    result = cli("train", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "nope.yaml: recipe file not found" in result.error_lines[0]


def test_predict_on_an_unfinished_run_says_so(cli, tmp_path):
    (tmp_path / "r.partial").mkdir()
    result = cli("predict", tmp_path / "r", "--text", "hi")
    assert result.exit_code == 2
    assert "not a finished run folder" in result.error_lines[0] and "--resume" in result.error_lines[0]
