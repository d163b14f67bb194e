"""Preference tuning: DPO learns a separable toy preference, KTO learns from pairs and from labelled
completions, ORPO / SimPO / CPO run, the adapter's reference equals a frozen copy, and bad rows and
options are named."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune_kit.config.loading import validate_recipe
from finetune_kit.models.building import build_model
from finetune_kit.tasks import build_task
from finetune_kit.training.arguments import build_training_arguments
from finetune_kit.training.trainer import build_trainer
from tests.builders import (
    answer_or_evasion_pairs,
    lora_sft_recipe,
    preference_recipe,
    toy_completions,
    toy_pairs,
    write_jsonl,
)


def training_log_losses(run_dir) -> list[float]:
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [entry["loss"] for entry in log if "loss" in entry]


def test_dpo_learns_the_preference(tiny_chat_llama, tmp_path, write_recipe, cli):
    """Full fine-tuning (the reference is a frozen copy): a random tiny model must move its
    embeddings to tell the sentiment words apart, which low-rank updates alone do slowly."""
    run_dir = tmp_path / "runs" / "dpo"
    recipe = preference_recipe(tiny_chat_llama, tmp_path, run_dir, peft=None, preference={"beta": 1.0})
    recipe["training"]["learning_rate"] = 1e-2
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    validation = metrics["validation"]
    assert validation["rewards/accuracies"] >= 0.9 and validation["rewards/margins"] > 0
    assert validation["logps/chosen"] > validation["logps/rejected"]
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert losses[-1] < 0.5 * losses[0]  # from log 2 (no preference yet)
    card = (run_dir / "README.md").read_text()
    assert "rewards/accuracies" in card and "preference loss: dpo" not in card.split("---")[1]
    held_out = write_jsonl(tmp_path / "data" / "held_out.jsonl", toy_pairs(24, 3))
    result = cli("eval", str(run_dir), "--data", str(held_out))  # no reference rebuilt to measure rewards against
    assert result.exit_code == 2 and "eval does not rebuild" in result.error_lines[0]


def test_sft_weight_keeps_the_chosen_replies_likely(tiny_chat_llama, tmp_path, write_recipe, cli):
    """RPO: with the chosen replies' language-model loss added, DPO still learns the preference, and
    the chosen replies end more likely than under DPO alone, which may lower both sides."""
    validation = {}
    for name, options in (("dpo", {}), ("rpo", {"sft_weight": 1.0})):
        run_dir = tmp_path / "runs" / name
        recipe = preference_recipe(tiny_chat_llama, tmp_path, run_dir, preference={"beta": 1.0, **options})
        recipe["data"] = {
            "train": str(write_jsonl(tmp_path / "rpo" / "train.jsonl", answer_or_evasion_pairs(80, 1))),
            "validation": str(write_jsonl(tmp_path / "rpo" / "validation.jsonl", answer_or_evasion_pairs(16, 2))),
        }
        recipe["training"]["epochs"] = 2
        result = cli("train", write_recipe(recipe))
        assert result.exit_code == 0, result.stderr
        validation[name] = json.loads((run_dir / "metrics.json").read_text())["validation"]
    assert validation["rpo"]["rewards/accuracies"] >= 0.9
    assert validation["rpo"]["logps/chosen"] > validation["dpo"]["logps/chosen"] + 3  # -13.1 against -24.9


def test_orpo_trains_and_lowers_its_loss(tiny_chat_llama, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "orpo"
    recipe = preference_recipe(tiny_chat_llama, tmp_path, run_dir, preference={"loss": "orpo", "beta": 0.1})
    recipe["training"]["epochs"] = 1
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["loss"] < metrics["before_training"]["loss"]


@pytest.mark.parametrize("loss", ["orpo", "simpo", "cpo", "dpo"])
def test_losses_without_a_reference_hold_no_second_model(loss, tiny_chat_llama, tmp_path):
    """Full fine-tuning: DPO keeps a frozen copy of the starting weights beside the policy (twice the
    weights in memory); ORPO, SimPO and CPO need none, and their trainer holds the policy alone."""
    raw = preference_recipe(tiny_chat_llama, tmp_path, tmp_path / "run", peft=None, preference={"loss": loss})
    recipe = validate_recipe(raw)
    task, tokenizer = build_task(recipe), AutoTokenizer.from_pretrained(tiny_chat_llama)
    task.prepare_tokenizer(tokenizer)
    rows = task.preprocess({"train": Dataset.from_list(toy_pairs(8, 5))}, tokenizer)["train"]
    model = build_model(recipe, task.model_head(), tokenizer)
    args = build_training_arguments(recipe.training, task, tmp_path / "checkpoints", "fp32")
    trainer = build_trainer(task, args, model, tokenizer, train_dataset=rows, eval_dataset=rows)
    others = [value for value in vars(trainer).values() if isinstance(value, torch.nn.Module) and value is not model]
    held = sum(parameter.numel() for other in others for parameter in other.parameters())
    policy = sum(parameter.numel() for parameter in model.parameters())
    assert held == (policy if loss == "dpo" else 0), [type(other).__name__ for other in others]


@pytest.mark.parametrize("layout", ["pairs", "completions"])
def test_kto_learns_from_pairs_and_from_labelled_completions(layout, tiny_chat_llama, tmp_path, write_recipe, cli):
    """Pairs are split into a desirable and an undesirable completion; unpaired rows carry the label.
    KTO counts no pairs: it is judged by its reward margin, desirable over undesirable."""
    run_dir = tmp_path / "runs" / "kto"
    recipe = preference_recipe(tiny_chat_llama, tmp_path, run_dir, preference={"loss": "kto"})
    rows = {"pairs": answer_or_evasion_pairs, "completions": toy_completions}[layout]
    recipe["data"] = {
        "train": str(write_jsonl(tmp_path / "kto" / "train.jsonl", rows(40 if layout == "pairs" else 80, 1))),
        "validation": str(write_jsonl(tmp_path / "kto" / "validation.jsonl", rows(16, 2))),
    }
    recipe["training"]["epochs"] = 2
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    before, after = metrics["before_training"], metrics["validation"]
    assert metrics["main_metric"] == "rewards/margins" and abs(before["rewards/margins"]) < 1e-6  # policy = reference
    assert after["rewards/margins"] > 1 and after["rewards/chosen"] > 0 > after["rewards/rejected"]
    assert after["loss"] < 0.5 * before["loss"]
    losses = training_log_losses(run_dir)
    assert losses[-1] < losses[0]
    assert "It reaches rewards/margins" in (run_dir / "README.md").read_text()


@pytest.mark.parametrize("loss", ["simpo", "cpo"])
def test_simpo_and_cpo_run_without_a_reference(loss, tiny_chat_llama, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / loss
    recipe = preference_recipe(tiny_chat_llama, tmp_path, run_dir, preference={"loss": loss, "cpo_alpha": 0.5})
    recipe["data"]["train"] = str(write_jsonl(tmp_path / "small.jsonl", toy_pairs(48, 1)))
    recipe["training"]["epochs"] = 1
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["main_metric"] == "rewards/accuracies"
    assert {"rewards/accuracies", "rewards/margins", "nll_loss"} <= metrics["validation"].keys()
    assert metrics["validation"]["loss"] < metrics["before_training"]["loss"]


@pytest.mark.unit
def test_validate_lists_the_options_the_loss_reads(tiny_chat_llama, tmp_path, write_recipe, cli):
    recipe = preference_recipe(tiny_chat_llama, tmp_path, tmp_path / "run", preference={"loss": "simpo"})
    result = cli("validate", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    assert "simpo_gamma: 0.5" in result.stdout and "cpo_alpha: 1.0" in result.stdout
    assert "desirable_weight" not in result.stdout


@pytest.mark.parametrize(
    ("options", "training", "message"),
    [
        ({"loss": "dpo", "desirable_weight": 2.0}, {}, "preference: desirable_weight applies to loss kto,"),
        ({"loss": "kto", "simpo_gamma": 1.0}, {}, "simpo_gamma applies to loss simpo, not to 'kto'"),
        ({"loss": "orpo", "cpo_alpha": 0.0}, {}, "cpo_alpha applies to loss cpo, simpo, not to 'orpo'"),
        ({"loss": "orpo", "sft_weight": 1.0}, {}, "sft_weight applies to loss dpo, ipo, hinge, robust, not to 'orpo'"),
        ({"loss": "kto"}, {"batch_size": 1}, "preference.loss kto needs training.batch_size 2 or more"),
    ],
)
@pytest.mark.unit
def test_an_option_the_loss_ignores_exits_2(options, training, message, tiny_chat_llama, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "bad"
    recipe = preference_recipe(tiny_chat_llama, tmp_path, run_dir, preference=options)
    recipe["training"] |= training
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2 and message in result.error_lines[0], result.stderr
    assert len(result.error_lines) == 1 and not run_dir.parent.exists()


@pytest.mark.parametrize(
    ("row", "loss", "message"),
    [
        ({"prompt": "hi", "completion": "yes"}, "kto", "data.train row 2: label is missing; set true"),
        ({"prompt": "hi", "completion": "yes", "label": "yes"}, "kto", "data.train row 2: label is 'yes'"),
        ({"prompt": "hi", "completion": " ", "label": True}, "kto", "data.train row 2, completion is empty"),
        ({"prompt": "hi", "completion": "yes", "label": True}, "dpo", "data.train: prompt / completion / label rows"),
    ],
)
@pytest.mark.unit
def test_bad_unpaired_rows_exit_2_naming_the_row(row, loss, message, tiny_chat_llama, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "bad"
    recipe = preference_recipe(tiny_chat_llama, tmp_path, run_dir, preference={"loss": loss})
    recipe["data"]["train"] = str(write_jsonl(tmp_path / "bad.jsonl", [*toy_completions(1, 0), row]))
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2 and message in result.error_lines[0], result.stderr
    assert not run_dir.parent.exists()


@pytest.mark.unit
def test_kto_needs_both_labels(tiny_chat_llama, tmp_path, write_recipe, cli):
    recipe = preference_recipe(tiny_chat_llama, tmp_path, tmp_path / "run", preference={"loss": "kto"})
    rows = [row | {"label": True} for row in toy_completions(8, 0)]
    recipe["data"]["validation"] = str(write_jsonl(tmp_path / "good-only.jsonl", rows))
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2 and "data.validation: every label is true" in result.error_lines[0]


@pytest.mark.parametrize("loss", ["dpo", "kto"])
def test_the_adapters_reference_equals_a_frozen_copy(loss, tiny_chat_llama, tmp_path):
    """With LoRA, no second model: the reference log-probs are the starting weights' own."""
    raw = preference_recipe(tiny_chat_llama, tmp_path, tmp_path / "run", preference={"loss": loss})
    recipe = validate_recipe(raw)
    task, tokenizer = build_task(recipe), AutoTokenizer.from_pretrained(tiny_chat_llama)
    task.prepare_tokenizer(tokenizer)
    rows = task.preprocess({"train": Dataset.from_list(toy_pairs(8, 5))}, tokenizer)["train"]

    def reference_logps(model, ref_model=None):
        args = build_training_arguments(recipe.training, task, tmp_path / "checkpoints", "fp32")
        trainer = build_trainer(task, args, model, tokenizer, train_dataset=rows, eval_dataset=rows)
        trainer.ref_model = ref_model if ref_model is not None else trainer.ref_model
        batch = next(iter(trainer.get_train_dataloader()))
        return trainer.compute_ref_log_probs(model, batch)

    adapted = reference_logps(build_model(recipe, task.model_head(), tokenizer))
    frozen = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    plain = reference_logps(AutoModelForCausalLM.from_pretrained(tiny_chat_llama), frozen)
    for ours, theirs in zip(adapted, plain, strict=True):
        assert torch.allclose(ours, theirs, rtol=1e-5)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "hi", "chosen": "", "rejected": "no"}, "data.train row 2, chosen is empty"),
        ({"prompt": "hi", "chosen": "yes", "rejected": " "}, "data.train row 2, rejected is empty"),
        ({"prompt": "hi", "chosen": "same", "rejected": "same"}, "data.train row 2: chosen and rejected are the same"),
        ({"prompt": "", "chosen": "yes", "rejected": "no"}, "data.train row 2, prompt is empty"),
    ],
)
@pytest.mark.unit
def test_bad_pairs_exit_2_naming_the_row(row, message, tiny_chat_llama, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "bad"
    recipe = preference_recipe(tiny_chat_llama, tmp_path, run_dir)
    recipe["data"]["train"] = str(write_jsonl(tmp_path / "bad.jsonl", [*toy_pairs(1, 0), row]))
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2 and message in result.error_lines[0], result.stderr
    assert not run_dir.exists() and not run_dir.parent.exists()


@pytest.mark.unit
def test_a_missing_column_is_named(tiny_chat_llama, tmp_path, write_recipe, cli):
    recipe = preference_recipe(tiny_chat_llama, tmp_path, tmp_path / "run")
    recipe["data"]["train"] = str(write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "hi", "chosen": "yes"}]))
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 2 and "column 'rejected' not found" in result.error_lines[0]


def test_preference_after_an_sft_adapter_run_reports_the_chains_emissions(tiny_chat_llama, tmp_path, write_recipe, cli):

    sft_dir = tmp_path / "runs" / "sft"
    sft = lora_sft_recipe(tiny_chat_llama, tmp_path / "sft-data", sft_dir)
    assert cli("train", write_recipe(sft, "sft.yaml")).exit_code == 0

    dpo_dir = tmp_path / "runs" / "dpo"
    recipe = preference_recipe(sft_dir / "model", tmp_path, dpo_dir, name="dpo")
    recipe["training"]["epochs"] = 1
    recipe["data"]["test"] = sft["data"]["test"]  # the SFT recipe's held-out prompts, scored before and after
    recipe["generation"] = {"max_new_tokens": 4}
    result = cli("train", write_recipe(recipe, "dpo.yaml"))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((dpo_dir / "metrics.json").read_text())
    assert "sentiment_accuracy" in metrics["generation"]
    assert "sentiment_accuracy" in metrics["before_training"]["generation"]
    grams = [json.loads((run / "emissions.json").read_text())["emissions_g"] for run in (sft_dir, dpo_dir)]
    card = (dpo_dir / "README.md").read_text()
    assert f"emitted **{sum(grams):.3f} g CO2eq**: sft (sft, {grams[0]:.3f} g) → dpo (preference" in card
    table = cli("emissions", dpo_dir).stdout
    assert f"{sum(grams):.4g}" in table
