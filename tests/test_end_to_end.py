"""A user's whole path on a tiny locally built BERT: train → run folder → card → predict → eval."""

import json

import pytest
import yaml
from huggingface_hub import ModelCard
from safetensors import safe_open

from tests.builders import classification_recipe, toy_sentiment_rows, write_jsonl


@pytest.fixture
def finished_run(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "toy"
    recipe = classification_recipe(tiny_bert, toy_data, run_dir)
    result = cli("train", write_recipe(recipe), "--set", "training.seed=3")
    assert result.exit_code == 0, result.stderr
    return run_dir, result


def test_training_learns_and_writes_a_complete_run_folder(finished_run):
    run_dir, result = finished_run
    assert "validation accuracy" in result.stdout and "g CO2eq" in result.stdout
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "README.md",
        "emissions.json",
        "log.jsonl",
        "metrics.json",
        "model",
        "recipe.yaml",
        "training_curve.png",
    ]
    assert not run_dir.with_name("toy.partial").exists()

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] >= 0.9  # majority class is ~0.5: the model learned
    assert metrics["test"]["accuracy"] >= 0.9
    assert {"f1_macro", "f1_neg", "f1_pos"} <= metrics["validation"].keys()
    assert metrics["train"]["tokens_per_second"] > 0

    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert recipe["training"]["seed"] == 3  # the resolved recipe, overrides included

    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    train_logs = [entry for entry in log if "loss" in entry]
    assert train_logs[-1]["loss"] < train_logs[0]["loss"]
    assert all(entry["tokens_per_second"] > 0 for entry in train_logs)
    assert sum("eval_accuracy" in entry for entry in log) == 3  # one evaluation per epoch

    emissions = json.loads((run_dir / "emissions.json").read_text())
    assert emissions["emissions_g"] > 0 and emissions["energy_kwh"] > 0
    assert emissions["country_iso_code"] == "FRA" and emissions["hardware"]

    with safe_open(str(run_dir / "model" / "model.safetensors"), "pt") as weights:
        assert any(name.startswith("classifier") for name in weights.keys())  # noqa: SIM118
    assert (run_dir / "model" / "tokenizer.json").is_file()


def test_model_card_loads_with_huggingface_hub(finished_run):
    run_dir, _ = finished_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    emissions = json.loads((run_dir / "emissions.json").read_text())
    card = ModelCard.load(run_dir / "README.md")
    data = card.data
    assert data.pipeline_tag == "text-classification"
    assert data.library_name == "transformers"
    assert data.base_model is None  # a purely local base is named in prose, never as a path
    assert "a fine-tuned version of the local checkpoint `tiny-bert0`" in card.text
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    assert results[("validation", "accuracy")] == pytest.approx(metrics["validation"]["accuracy"], abs=1e-4)
    assert results[("test", "accuracy")] == pytest.approx(metrics["test"]["accuracy"], abs=1e-4)
    co2 = data.co2_eq_emissions
    assert co2["emissions"] == pytest.approx(emissions["emissions_g"], abs=1e-4)
    assert co2["source"] == "codecarbon" and co2["training_type"] == "fine-tuning"
    assert co2["geographical_location"] == "France" and co2["hardware_used"]
    assert "## Training results" in card.text and "| 3.00 |" in card.text


def test_predict_writes_labels_with_scores(finished_run, tmp_path, cli):
    run_dir, _ = finished_run
    inputs = write_jsonl(tmp_path / "inputs.jsonl", [{"text": "the film was superb"}, {"text": "awful plot"}])
    out = tmp_path / "predictions.jsonl"
    result = cli("predict", run_dir, "--input", inputs, "--output", out)
    assert result.exit_code == 0, result.stderr
    predictions = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["label"] for p in predictions] == ["pos", "neg"]
    assert all(0.5 < p["score"] <= 1 and set(p["scores"]) == {"neg", "pos"} for p in predictions)

    direct = cli("predict", run_dir, "--text", "a lovely story")
    assert direct.exit_code == 0 and '"label": "pos"' in direct.stdout


def test_eval_scores_a_new_labelled_file(finished_run, tmp_path, cli):
    run_dir, _ = finished_run
    data = write_jsonl(tmp_path / "fresh.jsonl", toy_sentiment_rows(60, seed=9))
    result = cli("eval", run_dir, "--data", data)
    assert result.exit_code == 0, result.stderr
    saved = json.loads((run_dir / "eval" / "fresh.json").read_text())
    assert saved["accuracy"] >= 0.9 and "f1_macro" in saved

    unknown = write_jsonl(tmp_path / "odd.jsonl", [{"text": "good", "label": "meh"}])
    bad = cli("eval", run_dir, "--data", unknown)
    assert bad.exit_code == 2 and "odd.jsonl: row 1 has label 'meh'" in bad.error_lines[0]


def test_overwrite_replaces_a_finished_run_only_on_request(finished_run, tiny_bert, toy_data, write_recipe, cli):
    run_dir, _ = finished_run
    recipe = write_recipe(classification_recipe(tiny_bert, toy_data, run_dir, epochs=1), "again.yaml")
    refused = cli("train", recipe)
    assert refused.exit_code == 2 and "already holds a run; pass --overwrite" in refused.error_lines[0]
    assert cli("train", recipe, "--overwrite").exit_code == 0
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["training"]["epochs"] == 1


@pytest.mark.unit
def test_validate_checks_data_and_checkpoint_without_training(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "never"
    result = cli("validate", write_recipe(classification_recipe(tiny_bert, toy_data, run_dir)))
    assert result.exit_code == 0, result.stderr
    assert "ok" in result.stdout and "train 400" in result.stdout and "['neg', 'pos']" in result.stdout
    assert not run_dir.exists() and not run_dir.with_name("never.partial").exists()
