"""QLoRA vs bf16 LoRA vs full fine-tuning on one CUDA GPU: peak memory and tokens/s.

Plain transformers + peft + bitsandbytes, so it runs on a bare GPU machine: the same settings as
the toolkit's `peft.quantization: 4bit` (NF4, double quantization, bf16 compute; see
finetune_kit/models/quantization.py) and its decoder LoRA defaults (r 16, alpha 32, all linear
layers). Models are built from architecture configs with random weights (speed and memory depend
on the shapes alone): SmolLM2-135M's shape, and a 1.1B llama (TinyLlama's shape). Each setting
trains `--steps` steps of batch 8 x 512 tokens after 3 warm-up steps. Method: bench/README.md.

    python bench/qlora.py [--steps 10]
"""

from __future__ import annotations

import argparse
import gc
import json
import time

from finetune_kit.quiet import quiet_libraries

quiet_libraries()  # before the libraries: bitsandbytes (imported by peft) logs on import

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig

SHAPES = {
    "SmolLM2-135M": LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    ),
    "llama-1.1B": LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
    ),
}
BATCH, LENGTH, WARMUP = 8, 512, 3


def build(config: LlamaConfig, setting: str, folder: str) -> torch.nn.Module:
    """The model for one setting; QLoRA loads the saved bf16 weights quantized, as from a checkpoint."""
    if setting == "qlora":
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quantization, dtype=torch.bfloat16)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).cuda()
    if setting != "full":
        lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    return model


def measure(config: LlamaConfig, setting: str, folder: str, steps: int) -> dict:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build(config, setting, folder)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (BATCH, LENGTH), device="cuda")
    for step in range(WARMUP + steps):
        if step == WARMUP:
            torch.cuda.synchronize()
            started = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    result = {
        "tokens_per_second": round(steps * BATCH * LENGTH / seconds),
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    del model, optimizer
    gc.collect()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=None, help="Write the results as JSON here")
    args = parser.parse_args()
    print(torch.cuda.get_device_name(), "| batch", BATCH, "x", LENGTH, "tokens")
    print(f"{'model':14} {'setting':6} {'tokens/s':>9} {'peak GB':>8} {'trainable':>13}")
    results = {}
    for name, config in SHAPES.items():
        folder = f"/tmp/qlora-bench-{name}"
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(folder)
        for setting in ("full", "lora", "qlora"):
            result = results[f"{name}/{setting}"] = measure(config, setting, folder, args.steps)
            print(
                f"{name:14} {setting:6} {result['tokens_per_second']:9,} {result['peak_memory_gb']:8.2f}"
                f" {result['trainable']:13,}"
            )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
