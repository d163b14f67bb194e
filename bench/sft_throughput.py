"""The toolkit's packed SFT vs TRL's `SFTTrainer` with its defaults: same model, rows and hyperparameters.

Back to back in one session: `recipes/smollm2_sft_lora.yaml` through `finetune-kit train`
(packed, padding-free, loss on replies), then a plain TRL script: conversational prompt-completion
rows (TRL's default then takes the loss on the completion, the reply, as the toolkit does), TRL's
defaults otherwise (no packing, padding to the longest row of each batch, gradient checkpointing,
bf16), the same LoRA adapter, learning rate, epochs, max_length and optimizer steps. Both count
tokens the same way (`include_num_input_tokens_seen="non_padding"`). Prints real tokens/s, the
validation loss on the replies, and the ratios. Method: bench/README.md.

    python bench/sft_throughput.py --mix-dir data/instruction_mix [--rows 600] [--eval-rows 100]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import yaml
from datasets import Dataset
from peft import LoraConfig
from recipe_runs import train_recipe
from transformers import AutoModelForCausalLM, set_seed
from trl import SFTConfig, SFTTrainer

from finetune_kit.config.recipe import ModelConfig
from finetune_kit.models import load_tokenizer, resolve_checkpoint
from finetune_kit.models.gguf import load_gguf_model

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "smollm2_sft_lora.yaml"
PACKED_ROWS_PER_STEP = 2  # x max_length 512 ≈ 1,000 tokens a step, as 8 unpacked conversations of the mix


def sample(path: Path, rows: int, seed: int, out: Path) -> Path:
    lines = path.read_text(encoding="utf-8").splitlines()
    random.Random(seed).shuffle(lines)
    out.write_text("\n".join(lines[:rows]) + "\n", encoding="utf-8")
    return out


def as_prompt_completion(path: Path, system: str | None) -> Dataset:
    """TRL's conversational prompt-completion form: the turns before the last reply, then the reply."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        head = [{"role": "system", "content": system}] if system else []
        rows.append({"prompt": head + messages[:-1], "completion": messages[-1:]})
    return Dataset.from_list(rows)


def run_trl(recipe: dict, train: Path, validation: Path, batch_size: int, work: Path) -> dict:
    """TRL's SFTTrainer, defaults kept except what both runs must share."""
    t, peft = recipe["training"], recipe["peft"]
    set_seed(t["seed"])
    model = load_gguf_model(AutoModelForCausalLM, Path(resolve_checkpoint(recipe["model"]["checkpoint"])))
    tokenizer = load_tokenizer(ModelConfig(checkpoint=recipe["model"]["checkpoint"]))
    system = recipe["data"]["system_prompt"]
    args = SFTConfig(
        output_dir=str(work / "trl"),
        num_train_epochs=t["epochs"],
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=t["learning_rate"],
        warmup_steps=t["warmup_ratio"],
        weight_decay=t["weight_decay"],
        max_length=t["max_length"],
        seed=t["seed"],
        include_num_input_tokens_seen="non_padding",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    lora = LoraConfig(
        r=peft["r"],
        lora_alpha=peft["alpha"],
        lora_dropout=peft["dropout"],
        target_modules=peft["target_modules"],
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=as_prompt_completion(train, system),
        eval_dataset=as_prompt_completion(validation, system),
        processing_class=tokenizer,
        peft_config=lora,
    )
    output = trainer.train()
    runtime = output.metrics["train_runtime"]
    return {
        "tokens_per_second": trainer.state.num_input_tokens_seen / runtime,
        "runtime_s": runtime,
        "steps": trainer.state.global_step,
        "validation_loss": trainer.evaluate()["eval_loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mix-dir", type=Path, required=True, help="Output of scripts/instruction_mix.py")
    parser.add_argument("--rows", type=int, default=600, help="Training conversations (seeded sample)")
    parser.add_argument("--eval-rows", type=int, default=100, help="Validation conversations")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--trl-batch-size", type=int, default=8, help="Unpacked conversations a step")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sft-throughput-"))
    train = sample(args.mix_dir / "train.jsonl", args.rows, args.seed, work / "train.jsonl")
    validation = sample(args.mix_dir / "validation.jsonl", args.eval_rows, args.seed, work / "validation.jsonl")
    overrides = {
        "data.train": train,
        "data.validation": validation,
        "data.test": "null",
        "training.epochs": args.epochs,
        "training.batch_size": PACKED_ROWS_PER_STEP,
        "training.eval_strategy": "no",
    }
    metrics, _ = train_recipe(RECIPE, work / "toolkit", overrides)
    recipe = yaml.safe_load((work / "toolkit" / "recipe.yaml").read_text(encoding="utf-8"))
    toolkit = {
        "tokens_per_second": metrics["train"]["tokens_per_second"],
        "runtime_s": metrics["train"]["runtime"],
        "steps": metrics["train"]["steps"],
        "validation_loss": metrics["validation"]["loss"],
    }
    trl = run_trl(recipe, train, validation, args.trl_batch_size, work)
    print(f"{'run':24} {'tokens/s':>9} {'train s':>8} {'steps':>6} {'val loss':>9}")
    for name, result in (("toolkit (packed)", toolkit), ("TRL SFTTrainer defaults", trl)):
        print(
            f"{name:24} {result['tokens_per_second']:9.1f} {result['runtime_s']:8.1f} {result['steps']:6d}"
            f" {result['validation_loss']:9.4f}"
        )
    speed = toolkit["tokens_per_second"] / trl["tokens_per_second"]
    loss_gap = (toolkit["validation_loss"] - trl["validation_loss"]) / trl["validation_loss"]
    print(f"speed-up {speed:.2f}x tokens/s; validation loss {100 * loss_gap:+.1f}% vs TRL")
    out = REPO / "bench" / "results" / "sft_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": args.rows, "toolkit": toolkit, "trl": trl, "speedup": speed}, indent=2))


if __name__ == "__main__":
    main()
