"""Translation, summarization and denoising pretraining on tiny encoder-decoders built from
architecture configs, with tokenizers trained on the toy data."""

import json
import random

import pytest

from tests.builders import FILLER, NEGATIVE, POSITIVE, toy_sentiment_rows, write_jsonl

# A toy language pair: word-for-word, so a tiny model learns it in seconds.
GERMAN = dict(
    zip(
        FILLER + POSITIVE + NEGATIVE,
        "der film war ein handlung spiel geschichte wirklich ziemlich und es besetzung "  # noqa: SIM905
        "gut toll fein schön super genial schlecht furchtbar arm öde schrecklich langweilig".split(),
        strict=True,
    )
)
T5 = {"model_type": "t5", "d_model": 32, "d_ff": 64, "d_kv": 16, "num_layers": 2, "num_heads": 2}
BART = {
    "model_type": "bart",
    "d_model": 64,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
    "max_position_embeddings": 64,
}
TOKENIZER = {"kind": "unigram", "vocab_size": 120, "min_frequency": 1}
TRAINING = {"epochs": 20, "batch_size": 16, "learning_rate": 5e-3, "max_length": 32, "precision": "fp32"}
EMISSIONS = {"country_iso_code": "FRA", "measure_power_secs": 1}


def translation_rows(count, seed):
    rows = toy_sentiment_rows(count, seed)
    return [{"translation": {"en": r["text"], "de": " ".join(GERMAN[w] for w in r["text"].split())}} for r in rows]


def summary_rows(count, seed):
    """The summary is the text's sentiment word: which one must be found among the filler."""
    sentiment = set(POSITIVE + NEGATIVE)
    rows = toy_sentiment_rows(count, seed)
    return [
        {"id": f"{seed}-{i}", "document": r["text"], "summary": next(w for w in r["text"].split() if w in sentiment)}
        for i, r in enumerate(rows)
    ]


def translation_recipe(tmp_path, run_dir):
    return {
        "task": "translation",
        "model": {"architecture": BART},
        "tokenizer": TOKENIZER,
        "data": {
            "train": str(write_jsonl(tmp_path / "train.jsonl", translation_rows(400, 1))),
            "validation": str(write_jsonl(tmp_path / "validation.jsonl", translation_rows(60, 2))),
            "source_lang": "en",
            "target_lang": "de",
            "max_target_length": 24,
        },
        "training": dict(TRAINING),
        "emissions": EMISSIONS,
        "output_dir": str(run_dir),
    }


def test_translation_from_scratch_learns_the_toy_language(tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "translation"
    recipe = translation_recipe(tmp_path, run_dir)
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["bleu"] > 30 and metrics["validation"]["chrf"] > 50
    card = (run_dir / "README.md").read_text()
    assert "pipeline_tag: translation" in card and "training_type: pre-training" in card

    translated = cli("predict", run_dir, "--text", "the film was superb")
    assert translated.exit_code == 0 and '"generated"' in translated.stdout


@pytest.mark.unit
def test_flat_language_columns_and_a_missing_language_is_named(tmp_path, write_recipe, cli):
    flat = [{"en": r["translation"]["en"], "fr": r["translation"]["de"]} for r in translation_rows(20, 3)]
    recipe = {
        "task": "translation",
        "model": {"architecture": T5},
        "tokenizer": TOKENIZER,
        "data": {"train": str(write_jsonl(tmp_path / "flat.jsonl", flat)), "source_lang": "en", "target_lang": "de"},
        "output_dir": str(tmp_path / "run"),
    }
    result = cli("validate", write_recipe(recipe))
    assert result.exit_code == 2 and "'de'" in result.error_lines[0]
    nested = translation_rows(20, 3)
    nested[4] = {"translation": {"en": "a film"}}
    recipe["data"]["train"] = str(write_jsonl(tmp_path / "nested.jsonl", nested))
    result = cli("validate", write_recipe(recipe), "--set", "data.validation_fraction=0.5")
    assert result.exit_code == 2
    assert "no 'de' text in column 'translation' (languages there: en)" in result.error_lines[0]


def test_denoising_pretraining_then_summarization_with_several_references(tmp_path, write_recipe, cli):
    texts = [{"text": r["text"]} for r in toy_sentiment_rows(400, 4)]
    pretrained = tmp_path / "runs" / "denoise"
    denoise = {
        "task": "denoising",
        "model": {"architecture": BART},
        "tokenizer": TOKENIZER,
        "data": {"train": str(write_jsonl(tmp_path / "texts.jsonl", texts)), "max_target_length": 32},
        "training": {**TRAINING, "epochs": 10},
        "emissions": EMISSIONS,
        "output_dir": str(pretrained),
    }
    result = cli("train", write_recipe(denoise, "denoise.yaml"))
    assert result.exit_code == 0, result.stderr
    denoised = json.loads((pretrained / "metrics.json").read_text())["validation"]
    assert denoised["token_accuracy"] > 0.5  # most of the text is rebuilt, masked spans included

    test = summary_rows(40, 7)
    others = {row["id"]: random.Random(i).choice(POSITIVE + NEGATIVE) for i, row in enumerate(test)}
    references = [{"id": row["id"], "summaries": [row["summary"], others[row["id"]]]} for row in test]
    summarize = {
        "task": "summarization",
        "model": {"checkpoint": str(pretrained / "model")},
        "data": {
            "train": str(write_jsonl(tmp_path / "s-train.jsonl", summary_rows(400, 5))),
            "validation": str(write_jsonl(tmp_path / "s-validation.jsonl", summary_rows(40, 6))),
            "test": str(write_jsonl(tmp_path / "s-test.jsonl", test)),
            "test_references": str(write_jsonl(tmp_path / "refs.jsonl", references)),
            "max_target_length": 8,
        },
        "training": TRAINING,
        "generation": {"max_new_tokens": 8},
        "emissions": EMISSIONS,
        "output_dir": str(tmp_path / "runs" / "summarize"),
    }
    result = cli("train", write_recipe(summarize, "summarize.yaml"))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "runs" / "summarize" / "metrics.json").read_text())
    assert metrics["validation"]["rougeL"] > 50
    scored = metrics["test"]
    assert scored["references_per_row"] == 2
    assert scored["rouge1"] >= scored["rouge1_first_reference"]  # the best of two references, never worse
    card = (tmp_path / "runs" / "summarize" / "README.md").read_text()
    assert "local checkpoint `denoise/model`" in card and "type: rougeL" in card

    # the control: the same architecture and tokenizer, random weights
    control = {**summarize, "model": {"checkpoint": str(pretrained / "model"), "random_init": True}}
    control["output_dir"] = str(tmp_path / "runs" / "control")
    assert cli("train", write_recipe(control, "control.yaml")).exit_code == 0
    card = (tmp_path / "runs" / "control" / "README.md").read_text()
    assert "trained from random weights" in card and "training_type: pre-training" in card


MARIAN = {"model_type": "marian", "d_model": 32, "encoder_layers": 1, "decoder_layers": 1}


@pytest.mark.parametrize("architecture", [T5, MARIAN], ids=["t5", "marian"])
@pytest.mark.unit
def test_validate_builds_encoder_decoders_from_architectures(architecture, tmp_path, write_recipe, cli):
    recipe = {
        "task": "translation",
        "model": {"architecture": architecture},
        "tokenizer": TOKENIZER,
        "data": {
            "train": str(write_jsonl(tmp_path / "train.jsonl", translation_rows(50, 1))),
            "source_lang": "en",
            "target_lang": "de",
        },
        "output_dir": str(tmp_path / "run"),
    }
    result = cli("validate", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    assert "parameters:" in result.stdout
