import json

import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoTokenizer

from finetune_kit.config.loading import validate_recipe
from finetune_kit.errors import DataError
from finetune_kit.tasks import build_task
from finetune_kit.tasks.token_classification import entity_spans
from tests.builders import ner_recipe, write_jsonl


def make_task(**data):
    recipe = validate_recipe(
        {"task": "ner", "model": {"checkpoint": "x"}, "data": {"train": "t.jsonl", "tags_column": "ner_tags", **data}}
    )
    return build_task(recipe)


def splits(train, validation):
    return DatasetDict(train=Dataset.from_list(train), validation=Dataset.from_list(validation))


@pytest.mark.unit
def test_labels_have_b_and_i_for_every_type_and_iob1_is_converted():
    task = make_task()
    row = {"tokens": ["Paris", "is", "big"], "ner_tags": ["I-LOC", "O", "O"]}
    task.inspect(splits([row], [row]))
    assert task.labels == ["O", "B-LOC", "I-LOC"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"tokens": ["a", "b"], "ner_tags": ["O"]}, "data.train: row 2 has 2 tokens but 1 tags"),
        ({"tokens": [], "ner_tags": []}, "data.train: row 2 is an empty sentence"),
    ],
)
@pytest.mark.unit
def test_malformed_rows_are_named(row, message):
    good = {"tokens": ["Paris"], "ner_tags": ["B-LOC"]}
    with pytest.raises(DataError, match=message):
        make_task().inspect(splits([good, row], [good]))


@pytest.mark.unit
def test_integer_tags_without_names_are_refused():
    rows = [{"tokens": ["a"], "ner_tags": [3]}]
    with pytest.raises(DataError, match=r"data.train: row 1 has integer tags; name them with data.label_names"):
        make_task().inspect(splits(rows, rows))


@pytest.mark.unit
def test_unknown_tag_in_validation_is_named():
    with pytest.raises(DataError, match=r"data.validation: row 1 has tag 'B-ORG', which the train data does not have"):
        make_task().inspect(
            splits([{"tokens": ["a"], "ner_tags": ["B-LOC"]}], [{"tokens": ["b"], "ner_tags": ["B-ORG"]}])
        )


@pytest.mark.unit
def test_integer_tags_take_label_names():
    task = make_task(label_names=["O", "B-LOC", "I-LOC"])
    task.inspect(
        splits([{"tokens": ["Paris", "x"], "ner_tags": [1, 0]}], [{"tokens": ["New", "York"], "ner_tags": [1, 2]}])
    )
    assert task.labels == ["O", "B-LOC", "I-LOC"]


@pytest.mark.unit
def test_first_sub_token_carries_the_label_and_the_rest_are_ignored(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    rows = [{"tokens": ["superb", "storyline"], "ner_tags": ["B-POS", "O"]}]
    for label_all, expected_rest in ((False, -100), (True, 0)):
        task = make_task(label_all_subtokens=label_all)
        data = splits(rows, rows)
        task.inspect(data)
        features = task.preprocess(data, tokenizer)["train"][0]
        words = tokenizer(rows[0]["tokens"], is_split_into_words=True).word_ids()
        assert words.count(1) > 1  # the made-up word is split into several sub-tokens
        labels = features["labels"]
        first_of_word_1 = words.index(1)
        assert labels[0] == -100 and labels[-1] == -100  # [CLS] and [SEP]
        assert labels[words.index(0)] == task.labels.index("B-POS")
        assert labels[first_of_word_1] == task.labels.index("O")
        assert labels[first_of_word_1 + 1] == expected_rest


@pytest.mark.unit
def test_entity_spans_group_words():
    words = ["really", "superb", "and", "awful", "plot"]
    spans = entity_spans(words, ["B-POS", "I-POS", "O", "B-NEG", "I-POS"], [0.9, 0.7, 1.0, 0.8, 0.6])
    assert spans == [
        {"text": "really superb", "type": "POS", "start": 0, "end": 2, "score": 0.8},
        {"text": "awful", "type": "NEG", "start": 3, "end": 4, "score": 0.8},
        {"text": "plot", "type": "POS", "start": 4, "end": 5, "score": 0.6},
    ]


def test_ner_end_to_end_on_a_tiny_model(tiny_bert, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "ner"
    training = {"epochs": 4, "batch_size": 8, "learning_rate": 3e-3, "warmup_ratio": 0.1, "precision": "fp32"}
    recipe = ner_recipe(tiny_bert, tmp_path, run_dir, training=training)
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["main_metric"] == "f1" and metrics["validation"]["f1"] >= 0.8
    assert {"precision", "recall", "f1_POS", "f1_NEG"} <= metrics["validation"].keys()
    card = (run_dir / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "type: f1" in card

    out = tmp_path / "entities.jsonl"
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"tokens": ["the", "film", "was", "superb"]}])
    assert cli("predict", run_dir, "--input", inputs, "--output", out).exit_code == 0
    entities = json.loads(out.read_text())["entities"]
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in entities] == [("superb", "POS", 3, 4)]
    direct = cli("predict", run_dir, "--text", "an awful plot")
    assert direct.exit_code == 0 and '"type": "NEG"' in direct.stdout
