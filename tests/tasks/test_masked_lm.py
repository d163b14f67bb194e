import json

import pytest
from transformers import AutoTokenizer

from finetune_kit.models import base_model_id
from finetune_kit.runs import Layout
from tests.builders import classification_recipe, mlm_recipe, toy_sentiment_rows


def test_mlm_adaptation_lowers_perplexity_and_feeds_a_later_recipe(tiny_bert, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "mlm"
    result = cli("train", write_recipe(mlm_recipe(tiny_bert, tmp_path, run_dir), "mlm.yaml"))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    before, after = metrics["before_training"]["perplexity"], metrics["validation"]["perplexity"]
    assert after < 0.5 * before  # the random-init model learned the toy language
    card = (run_dir / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in card and "before_training | perplexity" in card
    assert not (run_dir / "baseline_metrics.json").exists()

    filled = cli("predict", run_dir, "--text", "the film was [MASK]")
    assert filled.exit_code == 0 and '"fills"' in filled.stdout
    refused = cli("predict", run_dir, "--text", "no mask here")
    assert refused.exit_code == 2 and "needs a [MASK] token" in refused.error_lines[0]

    # The adapted model is a checkpoint a later recipe can name.
    later = tmp_path / "runs" / "classifier"
    data = {"train": tmp_path / "c-train.jsonl", "validation": tmp_path / "c-validation.jsonl"}
    for split, seed in (("train", 3), ("validation", 4)):
        data[split].write_text("".join(json.dumps(r) + "\n" for r in toy_sentiment_rows(200, seed)))
    recipe = classification_recipe(run_dir / "model", data, later, epochs=1)
    assert cli("train", write_recipe(recipe, "classifier.yaml")).exit_code == 0
    assert "a fine-tuned version of the local checkpoint `mlm/model`" in (later / "README.md").read_text()


def test_whole_word_masking_trains(tiny_bert, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "wwm"
    recipe = mlm_recipe(tiny_bert, tmp_path, run_dir, whole_word_masking=True)
    recipe["training"]["epochs"] = 1
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    before, after = metrics["before_training"]["perplexity"], metrics["validation"]["perplexity"]
    vocabulary = AutoTokenizer.from_pretrained(tiny_bert).vocab_size
    # Untrained, the model guesses among the whole vocabulary; one epoch teaches it the toy language's
    # few filler and sentiment words, whole words masked at once or not.
    assert after < 0.5 * before and after < vocabulary / 3, (before, after, vocabulary)  # 124 before, 30 after


@pytest.mark.unit
def test_lineage_names_the_hub_model_a_local_checkpoint_descends_from(tmp_path):
    (tmp_path / Layout.LINEAGE).write_text(json.dumps({"base_model": "sentence-transformers/all-MiniLM-L6-v2"}))
    assert base_model_id(str(tmp_path)) == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_id("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
