import numpy as np
import pytest
from datasets import Dataset, DatasetDict
from transformers import EvalPrediction

from finetune_kit.config.loading import validate_recipe
from finetune_kit.errors import DataError
from finetune_kit.tasks import build_task

pytestmark = pytest.mark.unit


def make_task(**data):
    recipe = validate_recipe(
        {"task": "classification", "model": {"checkpoint": "x"}, "data": {"train": "t.csv", **data}}
    )
    return build_task(recipe)


def splits(train_labels, validation_labels, text="some text"):
    return DatasetDict(
        train=Dataset.from_dict({"text": [text] * len(train_labels), "label": train_labels}),
        validation=Dataset.from_dict({"text": [text] * len(validation_labels), "label": validation_labels}),
    )


def test_string_labels_are_sorted_into_ids():
    task = make_task()
    task.inspect(splits(["pos", "neg", "neutral", "pos"], ["neg"]))
    assert task.labels == ["neg", "neutral", "pos"]
    assert task.label_config()["label2id"] == {"neg": 0, "neutral": 1, "pos": 2}


def test_integer_labels_sort_numerically_and_take_names():
    task = make_task()
    task.inspect(splits([10, 2, 1], [2]))
    assert task.labels == ["1", "2", "10"]
    named = make_task(label_names=["negative", "positive"])
    named.inspect(splits([0, 1, 1], [0]))
    assert named.label_config()["id2label"] == {0: "negative", 1: "positive"}


def test_label_missing_from_train_names_split_row_and_labels():
    task = make_task()
    with pytest.raises(DataError, match=r"data.validation: row 2 has label 'maybe'.*labels are: neg, pos"):
        task.inspect(splits(["pos", "neg"], ["pos", "maybe"]))


def test_single_label_is_refused():
    with pytest.raises(DataError, match="only one label"):
        make_task().inspect(splits(["pos", "pos"], ["pos"]))


def test_integer_label_outside_label_names():
    with pytest.raises(DataError, match=r"data.train: row 3 has label 2, outside data.label_names"):
        make_task(label_names=["a", "b"]).inspect(splits([0, 1, 2], [0]))


def test_missing_column_lists_the_columns_that_exist():
    task = make_task(text_column="sentence")
    with pytest.raises(
        DataError, match=r"data.text_column: column 'sentence' not found in the train data; columns are: text, label"
    ):
        task.inspect(splits(["a", "b"], ["a"]))


def test_empty_text_is_reported_with_its_row():
    data = splits(["a", "b"], ["a"])
    data["train"] = Dataset.from_dict({"text": ["fine", None], "label": ["a", "b"]})
    with pytest.raises(DataError, match=r"data.train: row 2 has no text in column 'text'"):
        make_task().inspect(data)


def test_metrics_include_accuracy_macro_and_per_class_f1():
    task = make_task()
    task.inspect(splits(["neg", "pos"], ["neg"]))
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])
    metrics = task.compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 0, 1])), tokenizer=None)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["f1_neg"] == pytest.approx(2 / 3)
    assert metrics["f1_pos"] == pytest.approx(0.8)
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_sentence_pairs_are_encoded_together(tiny_bert):
    from transformers import AutoTokenizer

    task = make_task(text_column="premise", text_pair_column="hypothesis")
    data = DatasetDict(
        train=Dataset.from_dict(
            {"premise": ["good film", "bad plot"], "hypothesis": ["it was", "the acting"], "label": ["y", "n"]}
        ),
        validation=Dataset.from_dict({"premise": ["good"], "hypothesis": ["bad"], "label": ["y"]}),
    )
    task.inspect(data)
    features = task.preprocess(data, AutoTokenizer.from_pretrained(tiny_bert))
    row = features["train"][0]
    assert row["input_ids"].count(AutoTokenizer.from_pretrained(tiny_bert).sep_token_id) == 2
    assert row["labels"] == 1 and row["length"] == len(row["input_ids"])
