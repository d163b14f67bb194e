"""Causal LM: tokenizer training, a model built from an architecture, packing, pretraining then
fine-tuning from the pretrained run, seeded generation."""

import json
from itertools import chain

import pytest
from datasets import Dataset, DatasetDict

from finetune_kit.config.loading import validate_recipe
from finetune_kit.config.recipe import TokenizerConfig
from finetune_kit.models.tokenizer_training import train_tokenizer
from finetune_kit.tasks import build_task
from finetune_kit.tasks.causal_lm import pack
from tests.builders import TEXTS, clm_recipe

GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 64}


@pytest.mark.unit
def test_packing_keeps_every_token_once():
    rows = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]
    blocks = pack(rows, 4)
    assert blocks == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert list(chain.from_iterable(blocks)) == list(chain.from_iterable(rows))


@pytest.mark.parametrize("kind", ["bpe", "unigram", "wordpiece"])
@pytest.mark.unit
def test_trained_tokenizer_round_trips_and_ends_texts(kind):
    tokenizer = train_tokenizer(TokenizerConfig(kind=kind, vocab_size=300, min_frequency=1), TEXTS, max_length=64)
    assert 30 < len(tokenizer) <= 300  # unigram stops early: the toy corpus has few words
    text = "the acting was superb and the plot quite dull"
    ids = tokenizer(text)["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id  # encoders see the end; decoders learn to stop
    assert tokenizer.decode(ids, skip_special_tokens=True).strip() == text
    assert {tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.mask_token_id} <= set(range(5))


@pytest.mark.unit
def test_packed_blocks_hold_the_tokenized_text_exactly(tiny_gpt2):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    tokenizer.pad_token = tokenizer.eos_token
    recipe = {
        "task": "causal-lm",
        "model": {"checkpoint": "x"},
        "data": {"train": "t.txt"},
        "training": {"max_length": 16},
    }
    task = build_task(validate_recipe(recipe))
    data = DatasetDict(train=Dataset.from_dict({"text": TEXTS}))
    blocks = task.preprocess(data, tokenizer)["train"]["input_ids"]
    expected = [i for text in TEXTS for i in [*tokenizer(text)["input_ids"], tokenizer.eos_token_id]]
    assert list(chain.from_iterable(blocks)) == expected
    assert all(len(block) == 16 for block in blocks[:-1]) and 0 < len(blocks[-1]) <= 16

    # a text file's lines keep their newline and run on; a row without one is a document, ended by eos
    lines = DatasetDict(train=Dataset.from_dict({"text": ["the film\n", "was superb\n", "a review"]}))
    stream = list(chain.from_iterable(task.preprocess(lines, tokenizer)["train"]["input_ids"]))
    assert stream == tokenizer("the film\nwas superb\na review")["input_ids"] + [tokenizer.eos_token_id]


def test_pretrain_from_architecture_then_fine_tune_the_pretrained_run(tmp_path, write_recipe, cli):
    pretrained = tmp_path / "runs" / "pretrained"
    recipe = clm_recipe(
        tmp_path, pretrained, {"architecture": GPT2}, tokenizer={"kind": "bpe", "vocab_size": 300, "min_frequency": 1}
    )
    result = cli("train", write_recipe(recipe, "pretrain.yaml"))
    assert result.exit_code == 0, result.stderr
    assert "new gpt2" in result.stdout and "parameters:" in result.stdout
    metrics = json.loads((pretrained / "metrics.json").read_text())
    before, after = metrics["before_training"]["perplexity"], metrics["validation"]["perplexity"]
    assert after < 0.2 * before  # from ~uniform over the vocabulary to the toy language
    assert 0 < metrics["validation"]["bits_per_character"] < metrics["validation"]["bits_per_token"]
    assert metrics["model"]["parameters"] > 10_000 and [s["prompt"] for s in metrics["samples"]] == ["", "the film"]
    log = [json.loads(line) for line in (pretrained / "log.jsonl").read_text().splitlines()]
    sampled_at = {entry["step"] for entry in log if "samples" in entry}
    assert 0 in sampled_at and len(sampled_at) == 5  # before training, then after each epoch's evaluation
    card = (pretrained / "README.md").read_text()
    assert "training_type: pre-training" in card and "base_model" not in card.split("---")[1]
    assert "new gpt2 model" in card and "## Sample generations" in card
    assert (pretrained / "model" / "tokenizer.json").is_file()

    # the same seed gives the same text; the prompt is continued
    first = cli("generate", pretrained, "--prompt", "the film", "--seed", "3")
    again = cli("generate", pretrained, "--prompt", "the film", "--seed", "3")
    assert first.exit_code == 0 and first.stdout == again.stdout and first.stdout.startswith("the film")
    greedy = cli("generate", pretrained, "--prompt", "the", "--temperature", "0", "--max-new-tokens", "5")
    assert greedy.exit_code == 0 and greedy.stdout.startswith("the")
    predicted = cli("predict", pretrained, "--text", "the film")
    assert predicted.exit_code == 0 and '"prompt": "the film"' in predicted.stdout and '"generated"' in predicted.stdout

    # transfer learning: a second recipe fine-tunes the pretrained run's model
    tuned = tmp_path / "runs" / "tuned"
    fine_tune = clm_recipe(tmp_path, tuned, {"checkpoint": str(pretrained / "model")})
    fine_tune["training"]["epochs"] = 1
    assert cli("train", write_recipe(fine_tune, "tune.yaml")).exit_code == 0
    card = (tuned / "README.md").read_text()
    assert "training_type: fine-tuning" in card and "local checkpoint `pretrained/model`" in card


@pytest.mark.unit
def test_architecture_mistakes_are_one_line_errors(tmp_path, write_recipe, cli):
    tokenizer = {"tokenizer": {"vocab_size": 300}}
    typo = clm_recipe(tmp_path, tmp_path / "r", {"architecture": {**GPT2, "n_layers": 2}}, **tokenizer)
    result = cli("validate", write_recipe(typo))
    assert result.exit_code == 2
    assert "model.architecture.n_layers: not a gpt2 config field; did you mean 'n_layer'?" in result.error_lines[0]

    unknown = clm_recipe(tmp_path, tmp_path / "r", {"architecture": {"model_type": "gpt3"}}, **tokenizer)
    result = cli("validate", write_recipe(unknown))
    assert result.exit_code == 2 and "unknown model type 'gpt3'; did you mean" in result.error_lines[0]

    no_vocabulary = clm_recipe(tmp_path, tmp_path / "r", {"architecture": GPT2})
    result = cli("validate", write_recipe(no_vocabulary))
    assert result.exit_code == 2 and "needs a tokenizer section" in result.error_lines[0]

    both = clm_recipe(tmp_path, tmp_path / "r", {"architecture": GPT2, "checkpoint": "gpt2"}, **tokenizer)
    result = cli("validate", write_recipe(both))
    assert result.exit_code == 2 and "either checkpoint" in result.error_lines[0]
