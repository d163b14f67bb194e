"""PEFT adapters: every method trains, LoRA trains every task, runs keep the adapter only, and
`merge` gives a plain checkpoint that predicts exactly what the adapter run predicts.

Classification adapters train on the real offline MiniLM: an adapter on a randomly initialised
encoder has no features to adapt, so the tiny local BERT would test nothing."""

import json
import sys

import pytest
import torch
import yaml
from peft import TaskType
from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer

from finetune_kit.config.peft import FAMILY_DEFAULTS
from finetune_kit.errors import RecipeError
from finetune_kit.models.quantization import require_qlora_runtime
from tests.builders import (
    MINILM,
    adapter_recipe,
    classification_recipe,
    clm_recipe,
    mlm_recipe,
    ner_recipe,
    toy_sentiment_rows,
    write_jsonl,
)
from tests.tasks.test_seq2seq import translation_recipe

LORA = {"method": "lora", "r": 8, "alpha": 16}
SEQ2SEQ_LINEAR = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


@pytest.mark.slow
def test_lora_run_keeps_the_adapter_only_predicts_and_merges(toy_data, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "lora"
    result = cli("train", write_recipe(adapter_recipe(toy_data, run_dir, LORA)))
    assert result.exit_code == 0, result.stderr
    model_files = {p.name for p in (run_dir / "model").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "config.json", "tokenizer.json"} <= model_files
    assert "model.safetensors" not in model_files
    adapter_config = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == MINILM  # the Hub id, not the packaged copy's path
    assert "classifier" in adapter_config["modules_to_save"]  # the new head trains in full

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] >= 0.95
    counts = metrics["model"]
    assert 0 < counts["trainable_percent"] < 2  # adapters on every linear layer + the 2-label head
    assert f"trainable {counts['trainable_parameters']:,}" in result.stdout

    card = (run_dir / "README.md").read_text()
    assert "library_name: peft" in card and "- lora" in card and "Only a lora adapter was trained" in card

    # predict and eval take the adapter run as it is; merge gives the same predictions
    rows = toy_sentiment_rows(40, seed=9)
    texts = [row["text"] for row in rows]
    inputs = write_jsonl(tmp_path / "in.jsonl", rows)
    predictions = tmp_path / "predictions.jsonl"
    assert cli("predict", run_dir, "--input", inputs, "--output", predictions).exit_code == 0
    adapter_labels = [json.loads(line)["label"] for line in predictions.read_text().splitlines()]

    evaluated = cli("eval", run_dir, "--data", inputs)
    assert evaluated.exit_code == 0 and "accuracy" in evaluated.stdout

    merged_dir = tmp_path / "merged"
    assert cli("merge", run_dir, "--output", merged_dir).exit_code == 0
    assert not (merged_dir / "adapter_config.json").exists()
    model = AutoModelForSequenceClassification.from_pretrained(merged_dir)  # plain transformers
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    merged_labels = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    assert merged_labels == adapter_labels

    again = cli("merge", run_dir, "--output", merged_dir)
    assert again.exit_code == 2 and "not empty" in again.error_lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("peft", "learning_rate"),
    [
        ({"method": "lora", "use_dora": True, "target_modules": "auto"}, 5e-3),  # query/value: fast
        ({"method": "lora", "use_rslora": True, "target_modules": "all-linear"}, 1e-3),  # larger updates
        ({"method": "ia3"}, 5e-3),
        ({"method": "loha", "r": 4, "target_modules": "auto"}, 5e-3),
        ({"method": "lokr", "r": 4, "target_modules": "auto"}, 5e-3),
        ({"method": "prompt_tuning", "num_virtual_tokens": 4, "init_text": "is it good or bad"}, 3e-2),
    ],
    ids=["dora", "rslora-all-linear", "ia3", "loha", "lokr", "prompt-tuning"],
)
def test_every_method_trains_a_classifier(peft, learning_rate, toy_data, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / peft["method"]
    result = cli("train", write_recipe(adapter_recipe(toy_data, run_dir, peft, learning_rate=learning_rate)))
    assert result.exit_code == 0, result.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["validation"]["accuracy"] >= 0.9  # chance: 0.5
    predicted = cli("predict", run_dir, "--text", "a superb film")
    assert predicted.exit_code == 0 and '"label": "pos"' in predicted.stdout
    assert json.loads((run_dir / "model" / "adapter_config.json").read_text())["peft_type"].lower() == peft["method"]
    assert cli("predict", run_dir, "--text", "a superb film").exit_code == 0


@pytest.mark.unit
def test_prefix_tuning_is_refused_by_bert_with_the_reason(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    prefix = {"method": "prefix_tuning", "num_virtual_tokens": 4}
    recipe = adapter_recipe(toy_data, tmp_path / "x", prefix, checkpoint=tiny_bert)
    refused = cli("validate", write_recipe(recipe))
    assert refused.exit_code == 2
    assert refused.error_lines[0].startswith("error: peft.method: prefix_tuning does not fit bert models")
    assert "past key values" in refused.error_lines[0]


def test_lora_on_ner_and_masked_lm(tiny_bert, tmp_path, write_recipe, cli):
    ner_dir = tmp_path / "runs" / "ner"
    training = {"epochs": 4, "batch_size": 8, "learning_rate": 1e-2, "precision": "fp32"}
    ner = ner_recipe(tiny_bert, tmp_path, ner_dir, training=training, peft=LORA)
    assert cli("train", write_recipe(ner, "ner.yaml")).exit_code == 0
    assert json.loads((ner_dir / "metrics.json").read_text())["validation"]["f1"] >= 0.6
    spans = cli("predict", ner_dir, "--text", "an awful plot")
    assert spans.exit_code == 0 and '"type": "NEG"' in spans.stdout

    mlm_dir = tmp_path / "runs" / "mlm"
    mlm = mlm_recipe(tiny_bert, tmp_path, mlm_dir)
    mlm["peft"] = {**LORA, "target_modules": "all-linear"}
    mlm["training"]["learning_rate"] = 1e-2
    assert cli("train", write_recipe(mlm, "mlm.yaml")).exit_code == 0
    metrics = json.loads((mlm_dir / "metrics.json").read_text())
    assert metrics["validation"]["perplexity"] < 0.9 * metrics["before_training"]["perplexity"]
    assert (mlm_dir / "model" / "adapter_model.safetensors").is_file()


@pytest.mark.unit
def test_unknown_target_module_lists_the_real_ones(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    peft = {"method": "lora", "target_modules": ["q_proj"]}
    recipe = adapter_recipe(toy_data, tmp_path / "run", peft, checkpoint=tiny_bert)
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2
    line = result.error_lines[0]
    assert "peft.target_modules: no module named 'q_proj'" in line and "query" in line and "value" in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
@pytest.mark.unit
def test_qlora_without_cuda_is_refused_in_one_line(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    recipe = adapter_recipe(
        toy_data, tmp_path / "run", {"method": "lora", "quantization": "4bit"}, checkpoint=tiny_bert
    )
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2 and len(result.error_lines) == 1
    assert "peft.quantization: 4bit (QLoRA) needs a CUDA GPU" in result.error_lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


@pytest.mark.unit
def test_qlora_without_bitsandbytes_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # not installed, as importlib sees it
    expected = (
        "peft.quantization: 8bit (QLoRA) needs bitsandbytes, which is not installed; "
        "run `pip install 'finetune-kit[qlora]'`"
    )
    with pytest.raises(RecipeError) as refused:
        require_qlora_runtime("8bit")
    assert str(refused.value) == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a real GPU the probe quantizes and passes")
@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
@pytest.mark.unit
def test_qlora_where_bitsandbytes_cannot_quantize_is_refused_in_one_line(monkeypatch, quantization):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # but nothing can run there: the probe fails
    with pytest.raises(RecipeError) as refused:
        require_qlora_runtime(quantization)
    message = str(refused.value)
    assert message.startswith(f"peft.quantization: {quantization} (QLoRA): bitsandbytes ")
    assert "cannot quantize on this GPU (Torch not compiled with CUDA enabled)" in message
    assert message.endswith("check its install with `python -m bitsandbytes`") and "\n" not in message


@pytest.mark.unit
def test_named_target_modules_of_a_decoder_are_found(tiny_gpt2, tmp_path, write_recipe, cli):
    peft = {**LORA, "target_modules": ["c_attn"]}  # GPT-2's attention is a Conv1D, not a Linear
    recipe = clm_recipe(tmp_path, tmp_path / "run", {"checkpoint": str(tiny_gpt2)}, peft=peft)
    result = cli("validate", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    assert "trainable" in result.stdout


@pytest.mark.unit
def test_option_of_another_method_is_refused(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    recipe = adapter_recipe(toy_data, tmp_path / "run", {"method": "ia3", "r": 4}, checkpoint=tiny_bert)
    result = cli("validate", write_recipe(recipe))
    assert result.exit_code == 2
    assert result.error_lines[0].endswith("peft: r applies to lora, loha, lokr, not to method 'ia3'")


def test_merging_a_full_run_is_refused(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "full"
    assert cli("train", write_recipe(classification_recipe(tiny_bert, toy_data, run_dir, epochs=1))).exit_code == 0
    result = cli("merge", run_dir, "--output", tmp_path / "merged")
    assert result.exit_code == 2 and "no adapter to merge" in result.error_lines[0]
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["peft"] is None


@pytest.mark.parametrize(
    ("peft", "perplexity_ratio"),
    [({**LORA, "target_modules": "all-linear"}, 0.95), ({"method": "prefix_tuning", "num_virtual_tokens": 4}, 0.99)],
    ids=["lora", "prefix-tuning"],
)
def test_adapters_on_a_decoder_lower_perplexity_and_generate(
    peft, perplexity_ratio, tiny_gpt2, tmp_path, write_recipe, cli
):
    """The tiny GPT-2 is random: a small adapter moves its perplexity a little, but it must move."""
    run_dir = tmp_path / "runs" / "clm"
    recipe = clm_recipe(tmp_path, run_dir, {"checkpoint": str(tiny_gpt2)}, peft=peft)
    recipe["training"]["learning_rate"] = 1e-2
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["perplexity"] < perplexity_ratio * metrics["before_training"]["perplexity"]
    assert (run_dir / "model" / "adapter_model.safetensors").is_file()
    generated = cli("generate", run_dir, "--prompt", "the film", "--max-new-tokens", "4")
    assert generated.exit_code == 0 and generated.stdout.startswith("the film")


@pytest.mark.parametrize(
    ("peft", "output_layer_in"),
    [
        ({"method": "lora"}, "modules_to_save"),  # the seq2seq default: the output layer trained in full
        ({"method": "lora", "target_modules": [*SEQ2SEQ_LINEAR, "lm_head"]}, "target_modules"),  # low-rank there
    ],
    ids=["trained-in-full", "low-rank"],
)
def test_lora_on_an_encoder_decoder_with_the_tied_output_layer_merges(
    peft, output_layer_in, tmp_path, write_recipe, cli
):
    """An adapter that changes BART's output layer, which BART ties to its input embeddings: the
    merged checkpoint keeps the input embeddings and translates as the adapter did."""
    base = tmp_path / "runs" / "base"
    recipe = translation_recipe(tmp_path, base)
    recipe["training"]["epochs"] = 2
    assert cli("train", write_recipe(recipe, "base.yaml")).exit_code == 0

    run_dir = tmp_path / "runs" / "lora"
    recipe = translation_recipe(tmp_path, run_dir)
    recipe |= {"model": {"checkpoint": str(base / "model")}, "peft": peft}
    recipe.pop("tokenizer")
    result = cli("train", write_recipe(recipe, "lora.yaml"))
    assert result.exit_code == 0, result.stderr
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    losses = [entry["eval_loss"] for entry in log if "eval_loss" in entry]
    assert losses[-1] < losses[0]
    adapter_config = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    assert adapter_config["task_type"] == "SEQ_2_SEQ_LM" and "lm_head" in adapter_config[output_layer_in]
    predictions = tmp_path / "predictions.jsonl"
    translated = cli("predict", run_dir, "--text", "the film was superb", "--output", predictions)
    assert translated.exit_code == 0, translated.stderr
    adapter_translation = json.loads(predictions.read_text().splitlines()[0])["generated"]

    merged_dir = tmp_path / "merged"
    assert cli("merge", run_dir, "--output", merged_dir).exit_code == 0
    merged = AutoModelForSeq2SeqLM.from_pretrained(merged_dir)
    original = AutoModelForSeq2SeqLM.from_pretrained(base / "model")
    assert torch.equal(merged.get_input_embeddings().weight, original.get_input_embeddings().weight)
    assert not torch.equal(merged.get_output_embeddings().weight, original.get_output_embeddings().weight)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    inputs = tokenizer(["the film was superb"], return_tensors="pt")
    with torch.no_grad():
        output = merged.generate(**inputs, max_new_tokens=24, num_beams=1, do_sample=False)
    assert tokenizer.decode(output[0], skip_special_tokens=True) == adapter_translation


def minilm_ner_recipe(tmp_path, run_dir, peft, **training) -> dict:
    """Batches of 16, the learning rate unset: the adapter family's default."""
    training = {"batch_size": 16, "precision": "fp32", "logging_steps": 5, **training}
    return ner_recipe(MINILM, tmp_path, run_dir, training=training, peft=peft)


@pytest.mark.slow
def test_a_bare_lora_section_learns_ner_and_records_the_values_used(tmp_path, write_recipe, cli):
    """The reported bug: `peft: {method: lora}` alone on MiniLM tagged every CoNLL token O (F1 0);
    on this toy set the old values (query/value, r 8, learning rate 5e-4) reach F1 0.28, the NER
    family's defaults 0.83. The saved recipe shows the values used."""
    run_dir = tmp_path / "runs" / "ner"
    recipe = minilm_ner_recipe(tmp_path, run_dir, {"method": "lora"}, epochs=1)
    result = cli("train", write_recipe(recipe, "ner.yaml"))
    assert result.exit_code == 0, result.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["validation"]["f1"] >= 0.7
    defaults = FAMILY_DEFAULTS[TaskType.TOKEN_CLS]
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert saved["training"]["learning_rate"] == defaults.learning_rate
    assert saved["peft"]["r"] == defaults.r and saved["peft"]["alpha"] == defaults.alpha_per_rank * defaults.r
    assert saved["peft"]["target_modules"] == defaults.target_modules
    adapter_config = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    assert adapter_config["r"] == defaults.r and adapter_config["lora_alpha"] == defaults.alpha_per_rank * defaults.r
