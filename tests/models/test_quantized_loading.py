"""QLoRA's loading. The toolkit refuses it without CUDA; here bitsandbytes' CPU backend stands in for
CUDA where the quantized layers themselves are tested (a new task head, which the checkpoint lacks).
A GGUF file or an adapter run has no plain weights on disk, so they are written out first
(dequantized, or merged): there the quantized loading is replaced by a float64 one, which shows that
the loading arguments reached the weights, and the tests check that those weights are the checkpoint's own."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from finetune_kit.config.loading import load_recipe, validate_recipe
from finetune_kit.models import building
from finetune_kit.models.checkpoints import load_tokenizer
from finetune_kit.tasks import build_task
from finetune_kit.training.runner import prepare
from tests.builders import (
    adapter_recipe,
    answer_or_evasion_pairs,
    preference_recipe,
    sft_recipe,
    toy_pairs,
    write_jsonl,
)

PROBE = torch.tensor([[1, 2, 3, 4, 5]])


@pytest.fixture
def cpu_stands_in_for_cuda(monkeypatch):
    monkeypatch.setattr(building, "require_qlora_runtime", lambda quantization: None)
    # On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit weight for inference at its first pass
    # without gradients (the toolkit's dry run, the evaluation before training), and the layer cannot
    # train after that. CUDA has no such step.
    monkeypatch.setattr(bnb.nn.modules, "has_avx512bf16", lambda: False)


@pytest.fixture
def float64_for_quantization(monkeypatch):
    monkeypatch.setattr(building, "require_qlora_runtime", lambda quantization: None)
    monkeypatch.setattr(building, "quantized_loading", lambda quantization: {"dtype": torch.float64})


def set_head_bias(adapter_dir: Path, bias: list[float]) -> None:
    """Give the run's trained classifier head (saved in full with the adapter) a bias that decides every
    answer: a predict that used the run's head answers the first label with certainty; one that lost the
    adapter or the head (a fresh classifier) does not."""
    weights_file = adapter_dir / "adapter_model.safetensors"
    weights = load_file(weights_file)
    [key] = [name for name in weights if name.endswith("classifier.bias")]
    weights[key] = torch.tensor(bias, dtype=weights[key].dtype)
    save_file(weights, weights_file)


def plain_weight_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("finetune-kit-plain-weights-*"))


def logits_of_built_model(checkpoint: str, tmp_path: Path, quantization: str | None) -> torch.Tensor:
    """The preference task's model (LoRA, a zero update at first) built from `checkpoint`; with
    `quantization`, loaded in float64."""
    raw = {
        "task": "preference",
        "model": {"checkpoint": checkpoint},
        "data": {"train": str(write_jsonl(tmp_path / "pairs.jsonl", toy_pairs(8, 0)))},
        "peft": {"method": "lora", "r": 4, "quantization": quantization},
        "output_dir": str(tmp_path / "run"),
    }
    recipe = validate_recipe(raw)
    task, tokenizer = build_task(recipe), load_tokenizer(recipe.model)
    task.prepare_tokenizer(tokenizer)
    model = building.build_model(recipe, task.model_head(), tokenizer).eval()
    assert model.get_input_embeddings().weight.dtype == (torch.float64 if quantization else torch.float32)
    with torch.no_grad():
        return model(input_ids=PROBE).logits.float()


def test_qlora_after_an_sft_adapter_run_starts_from_the_merged_weights(
    float64_for_quantization, tiny_chat_llama, tmp_path, write_recipe, cli
):
    sft_dir = tmp_path / "runs" / "sft"
    sft = sft_recipe(tiny_chat_llama, tmp_path / "sft-data", sft_dir) | {"peft": {"method": "lora", "r": 8}}
    sft["training"]["epochs"] = 1
    assert cli("train", write_recipe(sft, "sft.yaml")).exit_code == 0

    checkpoint = str(sft_dir / "model")
    folders_before = plain_weight_folders()
    quantized = logits_of_built_model(checkpoint, tmp_path, "4bit")
    assert torch.allclose(quantized, logits_of_built_model(checkpoint, tmp_path, None), atol=1e-5)
    base = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    with torch.no_grad():
        assert not torch.allclose(quantized, base(input_ids=PROBE).logits, atol=1e-3)  # the SFT update is in
    assert plain_weight_folders() <= folders_before  # the temporary copy is gone


@pytest.mark.slow
def test_qlora_from_the_packaged_gguf_starts_from_its_dequantized_weights(float64_for_quantization, tmp_path):
    checkpoint = "HuggingFaceTB/SmolLM2-135M-Instruct"
    folders_before = plain_weight_folders()
    quantized = logits_of_built_model(checkpoint, tmp_path, "8bit")
    assert torch.allclose(quantized, logits_of_built_model(checkpoint, tmp_path, None), atol=1e-3)  # float64 vs 32
    assert plain_weight_folders() <= folders_before  # the temporary copy is gone


@pytest.mark.parametrize(
    ("quantization", "quantized_layer"), [("4bit", bnb.nn.Linear4bit), ("8bit", bnb.nn.Linear8bitLt)]
)
def test_qlora_classification_quantizes_the_encoder_and_trains_the_new_head_in_full(
    quantization, quantized_layer, cpu_stands_in_for_cuda, tiny_bert, toy_data, tmp_path, write_recipe, cli
):
    """The checkpoint has no classifier: bitsandbytes leaves that layer unquantized, and before the fix
    peft failed on it in one line (`'Parameter' object has no attribute 'compress_statistics'`)."""
    recipe = adapter_recipe(toy_data, tmp_path / "run", {"method": "lora", "quantization": quantization}, tiny_bert)
    recipe["training"] |= {"precision": "bf16", "max_steps": 4}  # QLoRA computes in bf16
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    adapter_config = json.loads((tmp_path / "run" / "model" / "adapter_config.json").read_text())
    assert "classifier" in adapter_config["modules_to_save"]
    set_head_bias(tmp_path / "run" / "model", [12.0, -12.0])
    out = tmp_path / "predictions.jsonl"
    predicted = cli("predict", tmp_path / "run", "--text", "a superb film", "--output", out)  # plain base + adapter
    assert predicted.exit_code == 0, predicted.stderr
    prediction = json.loads(out.read_text().splitlines()[0])
    first_label = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["id2label"]["0"]
    assert (prediction["label"], round(prediction["score"], 3)) == (first_label, 1.0)

    prepared = prepare(load_recipe(tmp_path / "recipe.yaml"))  # the task with its labels, as the run had it
    model = building.build_model(prepared.recipe, prepared.task.model_head(), prepared.tokenizer)
    assert isinstance(model, PeftModel)
    layers = dict(model.get_base_model().named_modules())
    assert isinstance(layers["bert.encoder.layer.0.attention.self.query"].base_layer, quantized_layer)
    assert type(layers["classifier"].original_module) is torch.nn.Linear
    assert layers["classifier"].modules_to_save["default"].weight.dtype == torch.float32  # trained in full precision


def test_qlora_sft_trains_then_its_run_chats_and_merges_like_any_adapter_run(
    cpu_stands_in_for_cuda, tiny_chat_llama, tmp_path, write_recipe, cli, monkeypatch
):
    run_dir = tmp_path / "runs" / "sft"
    recipe = sft_recipe(tiny_chat_llama, tmp_path / "data", run_dir)
    recipe["peft"] = {"method": "lora", "quantization": "4bit"}
    recipe["training"] |= {"precision": "bf16", "max_steps": 4}
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    assert (run_dir / "model" / "adapter_model.safetensors").is_file()
    assert "sentiment_accuracy" in json.loads((run_dir / "metrics.json").read_text())["generation"]  # it generated
    assert "- peft.quantization: 4bit" in (run_dir / "README.md").read_text()

    # afterwards the base loads in full precision, the adapter on top: the checkpoint's weights are plain
    assert "quantization_config" not in json.loads((run_dir / "model" / "config.json").read_text())
    monkeypatch.setattr("sys.stdin", io.StringIO("Sentiment of: a superb film\n"))
    chat = cli("chat", run_dir, "--max-new-tokens", "4")
    assert chat.exit_code == 0, chat.stderr
    assert chat.stdout.splitlines()[0] == "> Sentiment of: a superb film" and chat.stdout.splitlines()[1]
    assert cli("merge", run_dir, "--output", tmp_path / "merged").exit_code == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any(isinstance(layer, bnb.nn.Linear4bit) for layer in merged.modules())


def test_qlora_preference_tuning_learns_the_preference(
    cpu_stands_in_for_cuda, tiny_chat_llama, tmp_path, write_recipe, cli
):
    run_dir = tmp_path / "runs" / "dpo"
    recipe = preference_recipe(tiny_chat_llama, tmp_path, run_dir, preference={"beta": 1.0})
    recipe["data"] = {
        "train": str(write_jsonl(tmp_path / "pairs" / "train.jsonl", answer_or_evasion_pairs(80, 1))),
        "validation": str(write_jsonl(tmp_path / "pairs" / "validation.jsonl", answer_or_evasion_pairs(16, 2))),
    }
    recipe["peft"]["quantization"] = "4bit"
    recipe["training"] |= {"precision": "bf16", "epochs": 2}
    result = cli("train", write_recipe(recipe))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["validation"]["rewards/accuracies"] >= 0.9, metrics["validation"]
    assert (run_dir / "model" / "adapter_model.safetensors").is_file()
