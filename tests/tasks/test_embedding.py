"""Embedding models: each layout read off its columns or named, each loss checked against the layout,
retrieval sets checked, and a tiny encoder learning a retrieval task end to end through the CLI."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import yaml
from datasets import Dataset, DatasetDict

from finetune_kit.config.loading import validate_recipe
from finetune_kit.errors import DataError, RecipeError
from finetune_kit.tasks import build_task
from finetune_kit.tasks.sentence_pipeline import plain_metric_name
from tests.builders import FILLER, NEGATIVE, POSITIVE, write_jsonl

unit = pytest.mark.unit


def make_task(loss: dict | None = None, **data):
    recipe = {"task": "embedding", "model": {"checkpoint": "x"}, "data": {"train": "t.jsonl", **data}}
    if loss:
        recipe["loss"] = loss
    return build_task(validate_recipe(recipe))


def splits(**columns) -> DatasetDict:
    rows = Dataset.from_dict(columns)
    return DatasetDict(train=rows, validation=rows)


PAIRS = {"anchor": ["a cat", "a dog"], "positive": ["the cat sat", "the dog ran"]}


@unit
@pytest.mark.parametrize(
    ("columns", "layout", "metric"),
    [
        (PAIRS, "pair", "ndcg@10"),
        ({**PAIRS, "negative": ["a car", "a bus"]}, "triplet", "ndcg@10"),
        ({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "score": [0.2, 1]}, "scored-pair", "spearman"),
        ({"text": ["a", "b"], "label": [0, 1]}, "labelled", "loss"),
    ],
)
def test_the_layout_is_read_off_the_columns_and_picks_the_metric(columns, layout, metric):
    task = make_task()
    task.inspect(splits(**columns))
    assert (task.layout, task.main_metric) == (layout, metric)


@unit
def test_named_columns_are_renamed_in_the_layouts_order_even_when_they_swap_names():
    task = make_task(layout="pair", columns=["positive", "anchor"])
    data = splits(positive=["question 1", "question 2"], anchor=["answer 1", "answer 2"], extra=[1, 2])
    task.inspect(data)
    features = task.preprocess(data, tokenizer=None)["train"]
    assert features.column_names == ["anchor", "positive"]
    assert features[0] == {"anchor": "question 1", "positive": "answer 1"}


@unit
def test_unknown_columns_name_the_layouts_and_the_fix():
    with pytest.raises(DataError, match=r"data.train: cannot tell the layout from the columns q, a;.*data.layout"):
        make_task().inspect(splits(q=["x"], a=["y"]))


@unit
def test_a_loss_that_cannot_use_the_layout_names_the_losses_that_can():
    fits = r"loss.name: cosent cannot train on the pair layout.*multiple_negatives_ranking"
    with pytest.raises(DataError, match=fits):
        make_task(loss={"name": "cosent"}).inspect(splits(**PAIRS))


@unit
def test_cosent_scores_outside_the_unit_range_name_the_row():
    data = splits(sentence1=["a", "b"], sentence2=["c", "d"], score=[0.5, 4.0])
    with pytest.raises(DataError, match=r"data.train: row 2 has score 4.0 in column 'score', outside \[0, 1\]"):
        make_task().inspect(data)


@unit
def test_a_query_pointing_outside_the_corpus_is_named(tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "d1", "text": "a cat sat"}])
    queries = write_jsonl(tmp_path / "queries.jsonl", [{"id": "q1", "text": "cat", "relevant": ["d1", "d9"]}])
    task = make_task(test_retrieval={"queries": str(queries), "corpus": str(corpus)})
    data = splits(**PAIRS)
    data["test"] = data["train"]
    with pytest.raises(DataError, match=r"row 1 \(id q1\) points to corpus id 'd9', which data.test_retrieval.corpus"):
        task.inspect(data)


@unit
def test_setfit_refuses_an_adapter():
    with pytest.raises(RecipeError, match="peft: SetFit fine-tunes the whole encoder"):
        validate_recipe(
            {"task": "setfit", "model": {"checkpoint": "x"}, "data": {"train": "t.jsonl"}, "peft": {"method": "lora"}}
        )


@unit
def test_hard_negatives_need_pairs():
    columns = {**PAIRS, "negative": ["x", "y"]}
    with pytest.raises(DataError, match=r"data.hard_negatives: mines negatives for .* not triplet data"):
        make_task(hard_negatives={"count": 1}).inspect(splits(**columns))


@unit
def test_metric_names_drop_the_one_similarity_used():
    assert plain_metric_name("eval_cosine_ndcg@10") == "eval_ndcg@10"
    assert plain_metric_name("test_spearman_cosine") == "test_spearman"
    assert plain_metric_name("eval_loss") == "eval_loss"


def opposite_pairs(count: int, seed: int) -> list[dict]:
    """Anchors of two POSITIVE words, each positive the matching NEGATIVE words (no word shared): only a
    trained model can tell which text answers which anchor."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        first, second = rng.sample(range(len(POSITIVE)), 2)
        anchor = f"{POSITIVE[first]} {rng.choice(FILLER)} {POSITIVE[second]}"
        positive = f"{rng.choice(FILLER)} {NEGATIVE[first]} {NEGATIVE[second]} {rng.choice(FILLER)}"
        rows.append({"anchor": anchor, "positive": positive})
    return rows


def embedding_recipe(checkpoint, tmp_path, run_dir, **data) -> dict:
    folder = tmp_path / "pairs"
    return {
        "task": "embedding",
        "model": {"checkpoint": str(checkpoint)},
        "data": {
            "train": str(write_jsonl(folder / "train.jsonl", opposite_pairs(480, seed=1))),
            "validation": str(write_jsonl(folder / "validation.jsonl", opposite_pairs(30, seed=2))),
            **data,
        },
        "training": {"epochs": 3, "batch_size": 16, "learning_rate": 5e-3, "max_length": 16, "precision": "fp32"},
        "emissions": {"country_iso_code": "FRA", "measure_power_secs": 1},
        "output_dir": str(run_dir),
    }


def test_a_tiny_encoder_learns_to_retrieve_and_predicts_vectors(tiny_bert, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "embedding"
    result = cli("train", write_recipe(embedding_recipe(tiny_bert, tmp_path, run_dir)))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    before, after = metrics["before_training"]["ndcg@10"], metrics["validation"]["ndcg@10"]
    assert after > before + 0.2, (before, after)
    assert metrics["emissions_g_per_point"] > 0
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["data"]["layout"] == "pair"  # what was detected
    card = (run_dir / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "pipeline_tag: sentence-similarity" in card
    metadata = yaml.safe_load(card.split("---")[1])
    assert "sentence-transformers" in metadata["tags"] and metadata["co2_eq_emissions"]["emissions"] > 0
    assert metadata["widget"][0]["source_sentence"] in {row["anchor"] for row in opposite_pairs(30, seed=2)}
    assert (run_dir / "model" / "modules.json").is_file() and not (run_dir / "model" / "README.md").exists()

    result = cli("eval", run_dir, "--data", tmp_path / "pairs" / "validation.jsonl", "--output", tmp_path / "eval.json")
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["ndcg@10"] == pytest.approx(after, abs=1e-6)

    vectors = tmp_path / "vectors.npy"
    texts = ("good", "bad")
    result = cli("predict", run_dir, "--text", texts[0], "--text", texts[1], "--output", vectors)
    assert result.exit_code == 0, result.stderr
    matrix = np.load(vectors)
    assert matrix.shape == (2, 32) and np.isfinite(matrix).all()  # the tiny encoder's width, mean-pooled
    assert cli("predict", run_dir, "--text", "good").stdout.count("embedding") == 1


@unit
def test_shots_per_class_take_a_seeded_balanced_sample(tmp_path):
    from finetune_kit.data import load_data

    rows = [{"text": f"row {i}", "label": "pos" if i % 4 else "neg"} for i in range(40)]  # 30 pos, 10 neg
    recipe = validate_recipe(
        {
            "task": "setfit",
            "model": {"checkpoint": "x"},
            "data": {
                "train": str(write_jsonl(tmp_path / "t.jsonl", rows)),
                "validation": str(write_jsonl(tmp_path / "v.jsonl", rows[:4])),
                "shots_per_class": 4,
            },
        }
    )
    train = load_data(recipe.data, seed=3)["train"]
    assert sorted(train["label"]) == ["neg"] * 4 + ["pos"] * 4
    assert train["text"] == load_data(recipe.data, seed=3)["train"]["text"]
    too_many = recipe.data.model_copy(update={"shots_per_class": 11})
    with pytest.raises(DataError, match=r"data.shots_per_class: label 'neg' has 10 rows in data.train, fewer than 11"):
        load_data(too_many, seed=3)


def setfit_task(**setfit):
    recipe = {"task": "setfit", "model": {"checkpoint": "x"}, "data": {"train": "t.jsonl"}, "setfit": setfit}
    return build_task(validate_recipe(recipe))


@unit
def test_templated_examples_join_the_training_texts_only_with_the_label_names():
    task = setfit_task(templated_examples=2, template="A {} review")
    task.inspect(splits(text=["good film", "bad film"], label=["positive", "negative"]))
    texts, ids = task.texts["train"]
    assert texts[2:] == ["A negative review"] * 2 + ["A positive review"] * 2
    assert [task.labels[i] for i in ids] == ["positive", "negative", "negative", "negative", "positive", "positive"]
    assert task.texts["validation"] == (["good film", "bad film"], [1, 0])
    pairs = task.preprocess(splits(text=["good film", "bad film"], label=["positive", "negative"]), tokenizer=None)
    assert "A positive review" in list(pairs["train"]["sentence_1"]) + list(pairs["train"]["sentence_2"])


@unit
def test_templated_examples_refuse_labels_that_are_only_numbers():
    task = setfit_task(templated_examples=2)
    numbers = r"setfit.templated_examples: the labels are numbers \(0, 1\).*data.label_names"
    with pytest.raises(DataError, match=numbers):
        task.inspect(splits(text=["good film", "bad film"], label=[1, 0]))
    with pytest.raises(RecipeError, match=r"template: 'This sentence' needs one \{\}"):
        setfit_task(templated_examples=2, template="This sentence")


def test_setfit_learns_labels_from_a_few_shots_and_predicts_like_a_classifier(tiny_bert, toy_data, write_recipe, cli):
    run_dir = toy_data["train"].parent.parent / "runs" / "setfit"
    recipe = {
        "task": "setfit",
        "model": {"checkpoint": str(tiny_bert)},
        "data": {"train": str(toy_data["train"]), "validation": str(toy_data["validation"]), "shots_per_class": 16},
        "setfit": {"num_iterations": 20},
        "training": {"epochs": 4, "batch_size": 16, "learning_rate": 5e-3, "max_length": 16, "precision": "fp32"},
        "emissions": {"country_iso_code": "FRA", "measure_power_secs": 1},
        "output_dir": str(run_dir),
    }
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] >= 0.8, metrics["validation"]
    assert (run_dir / "model" / "model_head.pkl").is_file()
    assert "library_name: setfit" in (run_dir / "README.md").read_text()

    result = cli("predict", run_dir, "--text", "a great and superb film")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["label"] == "pos"
    result = cli("eval", run_dir, "--data", toy_data["validation"], "--output", run_dir.parent / "eval.json")
    assert result.exit_code == 0, result.stderr
    assert json.loads((run_dir.parent / "eval.json").read_text())["accuracy"] == metrics["validation"]["accuracy"]


@pytest.mark.parametrize("peft", [None, {"method": "lora"}], ids=["full", "lora"])
def test_a_killed_embedding_run_resumes_from_its_checkpoint_with_both_sessions_energy(
    peft, tiny_bert, tmp_path, write_recipe
):
    from tests.training.test_resume import killed_then_resumed

    run_dir = tmp_path / "runs" / "embedding"
    recipe = embedding_recipe(tiny_bert, tmp_path, run_dir)
    recipe["training"] |= {"max_steps": 60, "eval_strategy": "steps", "eval_steps": 10, "save_steps": 10}
    recipe["peft"] = peft  # an adapter run's checkpoints hold the adapter alone: resumed and reloaded as best too
    killed_then_resumed(write_recipe(recipe), run_dir, step=10)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 60 and metrics["validation"]["ndcg@10"] > metrics["before_training"]["ndcg@10"]
    assert json.loads((run_dir / "emissions.json").read_text())["sessions"] == 2


def test_a_sweep_searches_an_embedding_run_on_ndcg_against_grams(tiny_bert, tmp_path, write_recipe, cli):
    out = tmp_path / "sweep"
    recipe = embedding_recipe(tiny_bert, tmp_path, out)
    recipe["training"] |= {"epochs": 1}
    recipe["sweep"] = {
        "trials": 2,
        "objectives": ["ndcg@10", "co2"],
        "parameters": {"training.learning_rate": {"choice": [1e-3, 5e-3]}},
        "seed": 0,
    }
    result = cli("sweep", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "sweep.json").read_text())
    assert report["objectives"][0] == {"name": "ndcg@10", "direction": "maximize"}
    assert all(row["state"] == "complete" and 0 < row["metric"] <= 1 for row in report["trials"])
