"""QLoRA quantizes plain weights as they load. A GGUF file or an adapter run has none on disk, so they
are written out first (dequantized, or merged). bitsandbytes needs CUDA: here the quantized loading is
replaced by a float64 one, which shows that the loading arguments reached the weights, and the tests
check that those weights are the checkpoint's own."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from finetune_kit.config.loading import validate_recipe
from finetune_kit.models import building
from finetune_kit.models.checkpoints import load_tokenizer
from finetune_kit.tasks import build_task
from tests.conftest import write_jsonl
from tests.tasks.test_preference import toy_pairs
from tests.tasks.test_sft import sft_recipe

PROBE = torch.tensor([[1, 2, 3, 4, 5]])


@pytest.fixture
def float64_for_quantization(monkeypatch):
    monkeypatch.setattr(building, "require_cuda", lambda quantization: None)
    monkeypatch.setattr(building, "quantized_loading", lambda quantization: {"dtype": torch.float64})


def plain_weights_left_behind() -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob("finetune-kit-plain-weights-*"))


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
    quantized = logits_of_built_model(checkpoint, tmp_path, "4bit")
    assert torch.allclose(quantized, logits_of_built_model(checkpoint, tmp_path, None), atol=1e-5)
    base = AutoModelForCausalLM.from_pretrained(tiny_chat_llama).eval()
    with torch.no_grad():
        assert not torch.allclose(quantized, base(input_ids=PROBE).logits, atol=1e-3)  # the SFT update is in
    assert not plain_weights_left_behind()


@pytest.mark.slow
def test_qlora_from_the_packaged_gguf_starts_from_its_dequantized_weights(float64_for_quantization, tmp_path):
    checkpoint = "HuggingFaceTB/SmolLM2-135M-Instruct"
    quantized = logits_of_built_model(checkpoint, tmp_path, "8bit")
    assert torch.allclose(quantized, logits_of_built_model(checkpoint, tmp_path, None), atol=1e-3)  # float64 vs 32
    assert not plain_weights_left_behind()
