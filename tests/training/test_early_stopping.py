"""A run that stops early says why: in metrics.json, the console summary and the card."""

import json

from huggingface_hub import ModelCard

from tests.builders import classification_recipe


def test_early_stopping_is_reported_everywhere(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "patience"
    # A learning rate this small never changes the accuracy: the second evaluation is no better.
    recipe = classification_recipe(
        tiny_bert,
        toy_data,
        run_dir,
        epochs=20,
        learning_rate=1e-12,
        eval_strategy="steps",
        eval_steps=5,
        early_stopping_patience=1,
    )
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["stopped_early"]["step"] == 10  # two evaluations, the second no better
    assert metrics["stopped_early"]["reason"] == "early stopping: no better accuracy in 1 evaluation"
    assert "early stopping: no better accuracy in 1 evaluation, at step 10" in result.stdout
    assert "Training stopped early" in ModelCard.load(run_dir / "README.md").text
