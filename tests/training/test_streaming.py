"""`data.streaming`: training from datasets' iterable datasets, with every row checked as it is read."""

import json
from pathlib import Path

import pytest

from finetune_kit.config.loading import validate_recipe
from finetune_kit.data.streaming import HEAD_ROWS, load_streamed
from finetune_kit.errors import DataError, RecipeError
from finetune_kit.tasks import build_task, require_streams
from tests.builders import EMISSIONS, classification_recipe, sft_recipe, toy_sentiment_rows, write_jsonl

GOOD_ROWS = 3000  # a bad row after this many good ones: past the first rows checked before training


def streamed_clm(tiny_gpt2: Path, train: Path, validation: Path, run_dir: Path, steps: int) -> dict:
    return {
        "task": "causal-lm",
        "model": {"checkpoint": str(tiny_gpt2)},
        "data": {"train": str(train), "validation": str(validation), "streaming": True},
        "training": {
            "max_steps": steps,
            "batch_size": 8,
            "learning_rate": 3e-3,
            "max_length": 32,
            "precision": "fp32",
            "eval_strategy": "no",
            "logging_steps": 10,
        },
        "generation": {"prompts": ["the film"], "max_new_tokens": 4},
        "emissions": EMISSIONS,
        "output_dir": str(run_dir),
    }


def text_rows(count: int, seed: int) -> list[dict]:
    return [{"text": row["text"]} for row in toy_sentiment_rows(count, seed)]


@pytest.mark.unit
def test_streaming_without_max_steps_names_the_field_and_the_fix(tmp_path, write_recipe, cli):
    recipe = classification_recipe("x", {"train": tmp_path / "t.jsonl"}, tmp_path / "run")
    recipe["data"]["streaming"] = True
    result = cli("validate", write_recipe(recipe))
    assert result.exit_code == 2
    assert "training.max_steps: required with data.streaming" in result.error_lines[0]
    assert "--set training.max_steps=" in result.error_lines[0]


@pytest.mark.unit
def test_a_stream_that_would_never_evaluate_or_train_in_one_process_is_refused(tmp_path, write_recipe, cli):
    recipe = classification_recipe("x", {"train": tmp_path / "t.jsonl"}, tmp_path / "run", max_steps=10)
    recipe["data"]["streaming"] = True
    by_epoch = cli("validate", write_recipe(recipe))  # the default eval_strategy: epoch
    assert by_epoch.exit_code == 2
    assert "training.eval_strategy: 'epoch' with data.streaming" in by_epoch.error_lines[0]
    assert "--set training.eval_strategy=steps" in by_epoch.error_lines[0]

    recipe["training"] |= {"eval_strategy": "steps", "eval_steps": 5}
    launched = cli("train", write_recipe(recipe), "--processes-per-node", "2")
    assert launched.exit_code == 2 and "data.streaming: a stream trains in one process" in launched.error_lines[0]


@pytest.mark.unit
def test_a_task_that_cannot_stream_is_refused_by_name():
    recipe = {
        "task": "masked-lm",
        "model": {"checkpoint": "x"},
        "data": {"train": "t.txt", "streaming": True},
        "training": {"max_steps": 5, "eval_strategy": "no"},
    }
    with pytest.raises(RecipeError, match=r"data.streaming: the masked-lm task cannot train from a stream"):
        require_streams(build_task(validate_recipe(recipe)))


def test_streamed_causal_lm_trains_max_steps_into_a_complete_run(tmp_path, tiny_gpt2, write_recipe, cli):
    train = write_jsonl(tmp_path / "train.jsonl", text_rows(4000, seed=1))
    validation = write_jsonl(tmp_path / "validation.jsonl", text_rows(80, seed=2))
    run_dir = tmp_path / "runs" / "streamed"
    result = cli("train", write_recipe(streamed_clm(tiny_gpt2, train, validation, run_dir, steps=40)))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 40
    assert metrics["validation"]["perplexity"] < 0.5 * metrics["before_training"]["perplexity"]
    losses = [entry["loss"] for entry in map(json.loads, (run_dir / "log.jsonl").open()) if "loss" in entry]
    assert losses[-1] < losses[0]
    assert (run_dir / "model" / "model.safetensors").is_file() and (run_dir / "README.md").is_file()
    assert not run_dir.with_name("streamed.partial").exists()


def test_a_bad_row_deep_in_the_stream_stops_with_its_file_and_row(tmp_path, tiny_gpt2, write_recipe, cli):
    rows = [*text_rows(GOOD_ROWS, seed=1), {"body": "no text column here"}, *text_rows(100, seed=3)]
    train = write_jsonl(tmp_path / "corpus.jsonl", rows)
    validation = write_jsonl(tmp_path / "validation.jsonl", text_rows(40, seed=2))
    run_dir = tmp_path / "runs" / "bad"
    recipe = streamed_clm(tiny_gpt2, train, validation, run_dir, steps=500)
    recipe["data"]["packing"] = False  # one row per example: the bad row is read within a few steps
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2, result.stderr
    assert result.error_lines == [
        f"error: data.train (corpus.jsonl): row {GOOD_ROWS + 1} has no text in column 'text' (got None)"
    ]
    assert "Traceback" not in result.stderr
    assert run_dir.with_name("bad.partial").is_dir() and not run_dir.exists()


def test_streamed_classification_checks_each_label_as_it_is_read(tmp_path, tiny_bert, write_recipe, cli):
    rows = toy_sentiment_rows(GOOD_ROWS, seed=1)
    data = {
        "train": write_jsonl(tmp_path / "train.jsonl", rows),
        "validation": write_jsonl(tmp_path / "validation.jsonl", toy_sentiment_rows(60, seed=2)),
    }
    run_dir = tmp_path / "runs" / "cls"
    recipe = classification_recipe(tiny_bert, data, run_dir, max_steps=100, eval_strategy="no")
    recipe["data"]["streaming"] = True
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 100 and metrics["validation"]["accuracy"] > 0.8

    # a label no row before training had, far into the stream (the same columns: datasets reads it)
    write_jsonl(data["train"], [*rows, {"text": "the film was fine", "label": "mixed"}])
    recipe["output_dir"] = str(tmp_path / "runs" / "cls-bad")
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2
    assert result.error_lines[0].startswith(
        f"error: data.train (train.jsonl): row {GOOD_ROWS + 1} has label 'mixed', not one of the labels learned "
        "before training (neg, pos)"
    )
    assert (tmp_path / "runs" / "cls-bad.partial").is_dir()


@pytest.mark.unit
def test_a_row_the_reader_cannot_cast_is_found_by_its_number(tmp_path):
    """datasets reads JSON lines in 10 MB blocks, types fixed by the first: a later block with a new column fails
    as a whole, naming no row."""
    text = "the film was a quiet story and the acting was fine " * 4
    count = (12 << 20) // len(text)  # past the first block
    lines = [json.dumps({"text": text})] * count + [json.dumps({"body": "x"})]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    recipe = {"task": "causal-lm", "model": {"checkpoint": "x"}, "training": {"max_steps": 1, "eval_strategy": "no"}}
    validation = write_jsonl(tmp_path / "validation.jsonl", [{"text": text}])
    recipe["data"] = {"train": str(corpus), "validation": str(validation), "streaming": True}
    data, stream = load_streamed(validate_recipe(recipe).data, seed=0)
    assert len(data["train"]) == HEAD_ROWS and stream.first_row == 1
    with pytest.raises(DataError) as error:
        for _ in stream.rows:
            pass
    assert str(error.value) == (
        f"data.train (corpus.jsonl): row {count + 1} has column 'body', which the first rows do not have "
        "(columns are: text); fix or remove that row"
    )


def test_streamed_sft_packs_and_trains(tmp_path, tiny_chat_llama, write_recipe, cli):
    run_dir = tmp_path / "runs" / "sft"
    recipe = sft_recipe(tiny_chat_llama, tmp_path / "data", run_dir)
    recipe["data"]["streaming"] = True
    del recipe["data"]["test"]  # no held-out generation: the loss is what this test reads
    recipe["training"] |= {"max_steps": 30, "eval_strategy": "no"}
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 30
    assert metrics["validation"]["perplexity"] < metrics["before_training"]["perplexity"]
