import time

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

from finetune_kit.training.mfu import (
    flops_utilization,
    matmul_peak_flops,
    model_flops_utilization,
    training_flops_per_token,
)


@pytest.mark.unit
def test_flops_are_six_per_parameter_per_token_for_a_plain_network():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    parameters = sum(p.numel() for p in model.parameters())
    tokens = 1000
    assert training_flops_per_token(model) * tokens == 6 * parameters * tokens


@pytest.mark.unit
def test_embedding_lookups_are_not_counted_and_frozen_weights_cost_four():
    embedding, layer = torch.nn.Embedding(100, 8), torch.nn.Linear(8, 8, bias=False)
    layer.weight.requires_grad_(False)  # a frozen base weight: forward and input gradient only
    assert training_flops_per_token(torch.nn.Sequential(embedding, layer)) == 4 * 64


@pytest.mark.unit
def test_a_tied_output_layer_counts_once_per_use():
    config = GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=2)
    model = GPT2LMHeadModel(config)
    blocks = sum(p.numel() for name, p in model.named_parameters() if ".attn." in name or ".mlp." in name)
    assert training_flops_per_token(model) == 6 * (blocks + 50 * 8)  # the LM head reuses wte: a matmul


@pytest.mark.unit
def test_lora_counts_adapters_as_trained_and_base_weights_as_frozen():
    model = BertForSequenceClassification(_tiny_bert_config())
    full = training_flops_per_token(model)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"))
    trained = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    # base weights (the frozen original head included) at 4, adapters and the trained head copy at 6
    assert training_flops_per_token(lora) == 4 * full // 6 + 6 * trained


@pytest.mark.unit
def test_peak_is_positive_and_stable_within_a_factor_of_three():
    first = matmul_peak_flops.__wrapped__("fp32", "cpu", 0.05)
    second = matmul_peak_flops.__wrapped__("fp32", "cpu", 0.05)
    assert first > 1e8 and second > 1e8  # any CPU does 0.1 GFLOP/s
    assert 1 / 3 < first / second < 3  # loose: other processes may share the cores


def test_mfu_of_a_real_tiny_training_run_is_a_fraction():
    torch.manual_seed(0)
    model = BertForSequenceClassification(_tiny_bert_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = {"input_ids": torch.randint(0, 100, (16, 32)), "labels": torch.randint(0, 2, (16,))}
    started = time.perf_counter()
    for _ in range(5):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    tokens_per_second = 5 * batch["input_ids"].numel() / (time.perf_counter() - started)
    result = model_flops_utilization(model, tokens_per_second, "fp32")
    assert 0 < result["mfu"] < 1
    assert result["model_tflops"] == pytest.approx(result["mfu"] * result["peak_tflops"], rel=0.05, abs=1e-4)


@pytest.mark.unit
def test_utilization_is_achieved_over_the_peak_of_every_device():
    peak = matmul_peak_flops("fp32", "cpu")
    assert flops_utilization(1_000_000, peak / 4e6, "fp32", "cpu")["mfu"] == pytest.approx(0.25, abs=1e-3)
    assert flops_utilization(1_000_000, peak / 4e6, "fp32", "cpu", devices=2)["mfu"] == pytest.approx(0.125, abs=1e-3)


def _tiny_bert_config() -> BertConfig:
    return BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=2
    )
