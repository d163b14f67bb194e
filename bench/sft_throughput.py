"""The toolkit's packed SFT vs TRL's `SFTTrainer` with its defaults: same model, rows and hyperparameters.

Back to back in one session, for each seed: `recipes/smollm2_sft_lora.yaml` through `finetune-kit
train` (packed, padding-free, loss on replies), then a plain TRL script: conversational
prompt-completion rows (TRL's default then takes the loss on the completion, the reply, as the
toolkit does), TRL's defaults otherwise (no packing, padding to the longest row of each batch,
gradient checkpointing, bf16), the same LoRA adapter, learning rate, epochs and max_length, and as
many optimizer steps as the toolkit took (its batch size is set so). Both count tokens the same way
(`include_num_input_tokens_seen="non_padding"`). Both final models are then scored by one evaluator:
the mean loss on the validation replies' tokens, as the toolkit masks them (the reply and its
end-of-turn token; TRL's own loss also counts the newline after it), the same loss on the held-out
test conversations' labels (steadier than 50 validation rows where each reply is one word), and the
accuracy of the label each generates (greedy) for those held-out prompts (SST-2's, scored by accuracy). Prints
conversations/s, real tokens/s, MFU (against the matmul peak of each run's precision), that loss
and accuracy, and the ratios, per seed and their mean. Method and results:
docs/benchmarks/sft-preference.md.

Two data shapes: the instruction mix (long DialogSum rows beside one-word SST-2 answers) and short
single-task chat (`scripts/instruction_mix.py --tasks sst2`: every conversation about 70 tokens).

    python bench/sft_throughput.py --mix-dir data/instruction_mix [--rows 300] [--eval-rows 50] [--test-rows 200]
        [--seeds 0 1 2] [--held-out data/sst2_dev872/test.jsonl --test-rows 872]
    python bench/sft_throughput.py --mix-dir data/instruction_mix --toolkit-only --set chat.packing=false \
        --set training.batch_size=10     # a toolkit variant alone, to set beside an earlier table
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from finetune_kit.quiet import quiet_libraries

quiet_libraries()  # before the libraries: bitsandbytes (imported by peft) logs on import

import torch
import yaml
from datasets import Dataset
from peft import LoraConfig
from recipe_runs import train_recipe
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase, set_seed
from trl import SFTConfig, SFTTrainer

from finetune_kit.chat import load_chat_model
from finetune_kit.config.generation import GenerationSettings
from finetune_kit.config.recipe import ModelConfig
from finetune_kit.models import load_tokenizer, resolve_checkpoint
from finetune_kit.models.gguf import load_gguf_model
from finetune_kit.tasks.chat_template import encode_conversation
from finetune_kit.tasks.common import IGNORE_INDEX
from finetune_kit.tasks.generation import reply_texts
from finetune_kit.tasks.generation_metrics import SCORERS
from finetune_kit.training.mfu import model_flops_utilization

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


def conversations(path: Path, system: str | None) -> list[list[dict]]:
    head = [{"role": "system", "content": system}] if system else []
    return [head + json.loads(line)["messages"] for line in path.read_text(encoding="utf-8").splitlines()]


@torch.no_grad()
def reply_loss(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dialogues: list[list[dict]], max_length: int
) -> float:
    """Mean cross-entropy over every reply token of `dialogues` (one conversation at a time: no padding)."""
    model.eval()
    total, count = 0.0, 0
    for messages in dialogues:
        ids, labels, _ = encode_conversation(tokenizer, messages, "assistant", max_length)
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, :-1].float()
        targets = torch.tensor(labels[1:], device=model.device)
        scored = targets != IGNORE_INDEX
        total += torch.nn.functional.cross_entropy(logits[scored], targets[scored], reduction="sum").item()
        count += int(scored.sum())
    return total / count


def label_accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, held_out: list[list[dict]]) -> float:
    """Accuracy of the greedy reply to each held-out prompt against its reference label."""
    model.eval()
    prompts, references = [d[:-1] for d in held_out], [d[-1]["content"] for d in held_out]
    settings = GenerationSettings(max_new_tokens=4, temperature=0)
    return SCORERS["accuracy"](reply_texts(model, tokenizer, prompts, settings, batch_size=16), references)


def accuracy_prompts(path: Path, rows: int, system: str | None) -> list[list[dict]]:
    """The first `rows` held-out conversations whose task is scored by accuracy."""
    head = [{"role": "system", "content": system}] if system else []
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [head + row["messages"] for row in lines if row.get("metric") == "accuracy"][:rows]


def run_trl(
    recipe: dict, train: Path, batch_size: int, work: Path, dialogues: list[list[dict]], held_out: list[list[dict]]
) -> dict:
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
        use_cpu=not torch.cuda.is_available(),
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
        processing_class=tokenizer,
        peft_config=lora,
    )
    output = trainer.train()
    runtime = output.metrics["train_runtime"]
    tokens_per_second = trainer.state.num_input_tokens_seen / runtime
    return {
        "conversations_per_second": output.metrics["train_samples_per_second"],  # unpacked: a row is a conversation
        "tokens_per_second": tokens_per_second,
        "mfu": model_flops_utilization(trainer.model, tokens_per_second, "bf16" if args.bf16 else "fp32")["mfu"],
        "runtime_s": runtime,
        "steps": trainer.state.global_step,
        "reply_loss": reply_loss(trainer.model, tokenizer, dialogues, t["max_length"]),
        "held_out_loss": reply_loss(trainer.model, tokenizer, held_out, t["max_length"]),
        "accuracy": label_accuracy(trainer.model, tokenizer, held_out),
    }


def run_toolkit(
    train: Path,
    validation: Path,
    held_out: list[list[dict]],
    epochs: float,
    seed: int,
    work: Path,
    recipe_sets: dict[str, str],
    packed_rows: int,
) -> tuple[dict, dict]:
    """The shipped recipe (with `recipe_sets`) on the same rows; its resolved recipe (what TRL must
    share) and results."""
    overrides = {
        "data.train": train,
        "data.validation": validation,
        "data.test": "null",
        "training.epochs": epochs,
        "training.batch_size": packed_rows,
        "training.gradient_accumulation_steps": 1,  # packed_rows a step, in one pass
        "training.eval_strategy": "no",
        "training.seed": seed,
        **recipe_sets,
    }
    run_dir = work / f"toolkit-{seed}"
    metrics, _ = train_recipe(RECIPE, run_dir, overrides)
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    chat = load_chat_model(str(run_dir))
    chat.model.to("cuda" if torch.cuda.is_available() else "cpu")  # scored where TRL's model is
    dialogues = conversations(validation, recipe["data"]["system_prompt"])
    return recipe, {
        "conversations_per_second": metrics["train"]["samples_per_second"],  # counts conversations, not packed rows
        "tokens_per_second": metrics["train"]["tokens_per_second"],
        "mfu": metrics["train"]["mfu"],
        "runtime_s": metrics["train"]["runtime"],
        "steps": metrics["train"]["steps"],
        "reply_loss": reply_loss(chat.model, chat.tokenizer, dialogues, recipe["training"]["max_length"]),
        "held_out_loss": reply_loss(chat.model, chat.tokenizer, held_out, recipe["training"]["max_length"]),
        "accuracy": label_accuracy(chat.model, chat.tokenizer, held_out),
    }


def print_row(name: str, result: dict) -> None:
    print(
        f"{name:30} {result['conversations_per_second']:7.2f} {result['tokens_per_second']:9.1f}"
        f" {100 * result['mfu']:5.2f}%"
        f" {result['runtime_s']:8.1f} {result['steps']:6d} {result['reply_loss']:11.4f}"
        f" {result['held_out_loss']:13.4f} {result['accuracy']:9.3f}"
    )


def relative_gap(results: list[dict], key: str) -> list[float]:
    """Per seed, the toolkit's `key` relative to TRL's (+0.02: 2 % higher)."""
    return [(r["toolkit"][key] - r["trl"][key]) / r["trl"][key] for r in results]


def mean_and_seeds(values: list[float], scale: float, form: str) -> tuple[str, str]:
    """The mean with its standard error over the seeds (paired by seed: is a gap more than the
    seed's own noise?), and each seed's value, formatted."""
    each = ", ".join(format(scale * v, form) for v in values)
    mean = format(scale * statistics.mean(values), form)
    if len(values) > 1:
        mean += " ± " + format(scale * statistics.stdev(values) / math.sqrt(len(values)), form.lstrip("+"))
    return mean, f"(per seed {each}; mean ± standard error)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mix-dir", type=Path, required=True, help="Output of scripts/instruction_mix.py")
    parser.add_argument("--rows", type=int, default=300, help="Training conversations (seeded sample)")
    parser.add_argument("--eval-rows", type=int, default=50, help="Validation conversations")
    parser.add_argument("--test-rows", type=int, default=200, help="Held-out prompts scored by label accuracy")
    parser.add_argument(
        "--held-out",
        type=Path,
        help="Held-out file in the mix's form (default: the mix's test.jsonl); a larger one narrows the error",
    )
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="Training seeds (rows stay the same)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="Recipe override for the toolkit's runs only"
    )
    parser.add_argument(
        "--packed-rows", type=int, default=PACKED_ROWS_PER_STEP, help="Toolkit packed rows a step (more on a GPU)"
    )
    parser.add_argument("--toolkit-only", action="store_true", help="Skip TRL: compare toolkit variants by hand")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sft-throughput-"))
    train = sample(args.mix_dir / "train.jsonl", args.rows, 0, work / "train.jsonl")
    validation = sample(args.mix_dir / "validation.jsonl", args.eval_rows, 0, work / "validation.jsonl")
    system = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))["data"]["system_prompt"]
    held_out = accuracy_prompts(args.held_out or args.mix_dir / "test.jsonl", args.test_rows, system)
    results = []
    print(
        f"{'run':30} {'conv/s':>7} {'tokens/s':>9} {'MFU':>6} {'train s':>8} {'steps':>6} "
        f"{'reply loss':>11} {'held-out loss':>13} {'accuracy':>9}"
    )
    recipe_sets = dict(item.split("=", 1) for item in args.set)
    for seed in args.seeds:
        recipe, toolkit = run_toolkit(
            train, validation, held_out, args.epochs, seed, work, recipe_sets, args.packed_rows
        )
        print_row(f"toolkit, seed {seed}", toolkit)
        if args.toolkit_only:
            continue
        trl_batch = math.ceil(args.rows / toolkit["steps"])  # as many optimizer steps as the toolkit's
        trl = run_trl(recipe, train, trl_batch, work, conversations(validation, system), held_out)
        print_row(f"TRL defaults (batch {trl_batch}), seed {seed}", trl)
        results.append({"seed": seed, "toolkit": toolkit, "trl": trl})
    if args.toolkit_only:
        return
    speed = [r["toolkit"]["conversations_per_second"] / r["trl"]["conversations_per_second"] for r in results]
    gap, held_out_gap = relative_gap(results, "reply_loss"), relative_gap(results, "held_out_loss")
    accuracy_gap = [r["toolkit"]["accuracy"] - r["trl"]["accuracy"] for r in results]
    print("speed-up {}x conversations/s {}".format(*mean_and_seeds(speed, 1, ".2f")))
    print("reply loss {} % vs TRL {}".format(*mean_and_seeds(gap, 100, "+.1f")))
    print("held-out reply loss {} % vs TRL {}".format(*mean_and_seeds(held_out_gap, 100, "+.1f")))
    print(
        "held-out accuracy {} points vs TRL {}, {} prompts".format(
            *mean_and_seeds(accuracy_gap, 100, "+.1f"), len(held_out)
        )
    )
    out = REPO / "bench" / "results" / f"sft_throughput_{args.mix_dir.name}.json"
    out.parent.mkdir(exist_ok=True)
    summary = {"speedup": speed, "loss_gap": gap, "held_out_loss_gap": held_out_gap, "accuracy_gap": accuracy_gap}
    out.write_text(json.dumps({"rows": args.rows, "runs": results, **summary}, indent=2))


if __name__ == "__main__":
    main()
