"""Toolkit vs plain transformers Trainer scripts on the same SST-2 slice, model and hyperparameters.

Prints samples/s, tokens/s and dev accuracy for each, and the toolkit's speed-up ratios against
each baseline run in this same session. Also the codecarbon overhead (toolkit with vs without).
Method and levers: bench/README.md.

    python bench/throughput.py [--rows 4000] [--epochs 1] [--skip-pad128] [--skip-overhead]
    python bench/throughput.py --data-dir path/to/full/sst2 --rows 67349 --skip-pad128 --skip-overhead
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from functools import cache
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from finetune_kit.quiet import quiet_libraries

quiet_libraries()  # before the libraries: bitsandbytes (imported by peft) logs on import

import numpy as np
import torch
from datasets import load_dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from finetune_kit.commands.train import train
from finetune_kit.config import load_recipe
from finetune_kit.config.recipe import Recipe
from finetune_kit.models import resolve_checkpoint
from finetune_kit.training.mfu import flops_utilization, model_flops_utilization, training_flops_per_token

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "sst2_demo.yaml"
DATA = REPO / "recipes" / "data" / "sst2"


def recipe_hyperparameters(overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The recipe's hyperparameters (after `--set`-style overrides), for the plain scripts to copy."""
    recipe = load_recipe(RECIPE, list(overrides))
    t = recipe.training
    return {
        "checkpoint": recipe.model.checkpoint,
        "batch_size": t.batch_size,
        "learning_rate": t.learning_rate,
        "lr_scheduler": t.lr_scheduler,
        "warmup_ratio": t.warmup_ratio,
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        "max_length": t.max_length,
        "seed": t.seed,
    }


def plain_trainer(
    data_dir: Path,
    rows: int | None,
    epochs: float,
    hp: dict,
    *,
    pad_to_128: bool = False,
    sampling: str = "random",
    precision: str = "fp32",
) -> dict:
    """What a user writes by hand: the transformers example-script way (fp32, random batches by
    default; `sampling` and `precision` let the bench switch one lever at a time)."""
    set_seed(hp["seed"])
    source = resolve_checkpoint(hp["checkpoint"])
    tokenizer = AutoTokenizer.from_pretrained(source)
    files = {"train": str(data_dir / "train.jsonl"), "validation": str(data_dir / "validation.jsonl")}
    data = load_dataset("json", data_files=files)
    if rows is not None and rows < len(data["train"]):  # the same seeded sample as data.max_train_rows
        data["train"] = data["train"].shuffle(seed=hp["seed"]).select(range(rows))
    padding = "max_length" if pad_to_128 else False

    def encode(batch):
        return tokenizer(batch["sentence"], truncation=True, max_length=hp["max_length"], padding=padding)

    data = data.map(encode, batched=True, remove_columns=["sentence", "idx"])
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs,
            per_device_train_batch_size=hp["batch_size"],
            per_device_eval_batch_size=hp["batch_size"] * 2,
            learning_rate=hp["learning_rate"],
            lr_scheduler_type=hp["lr_scheduler"],
            warmup_steps=hp["warmup_ratio"],  # a float below 1 is a ratio of the total steps
            weight_decay=hp["weight_decay"],
            max_grad_norm=hp["max_grad_norm"],
            seed=hp["seed"],
            train_sampling_strategy=sampling,
            bf16=precision == "bf16",
            eval_strategy="no",
            save_strategy="no",
            logging_steps=50,
            include_num_input_tokens_seen="non_padding",
            report_to="none",
            use_cpu=True,
        )

        def accuracy(prediction):
            return {"accuracy": float(np.mean(np.argmax(prediction.predictions, -1) == prediction.label_ids))}

        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data["train"],
            eval_dataset=data["validation"],
            data_collator=default_data_collator if pad_to_128 else DataCollatorWithPadding(tokenizer),
            compute_metrics=accuracy,
        )
        started = time.perf_counter()
        output = trainer.train()
        wall = time.perf_counter() - started
        evaluation = trainer.evaluate()
    tokens_per_second = trainer.state.num_input_tokens_seen / output.metrics["train_runtime"]
    return {
        "samples_per_second": output.metrics["train_samples_per_second"],
        "tokens_per_second": tokens_per_second,
        "accuracy": evaluation["eval_accuracy"],
        "precision": precision,
        "train_wall_s": wall,
        **model_flops_utilization(model, tokens_per_second, precision),
    }


def toolkit(
    data_dir: Path,
    rows: int | None,
    epochs: float,
    out: Path,
    overrides: list[str] | tuple[str, ...] = (),
    emissions: bool = True,
) -> dict:
    """The bundled default recipe, unchanged but for the data, slice, epochs, output folder and
    any `overrides` (`training.seed=7`, `training.group_by_length=false`, ...)."""
    recipe = load_recipe(
        RECIPE,
        [
            f"data.train={data_dir / 'train.jsonl'}",
            f"data.validation={data_dir / 'validation.jsonl'}",
            *([f"data.max_train_rows={rows}"] if rows is not None else []),
            f"training.epochs={epochs}",
            "training.eval_strategy=no",
            f"emissions.enabled={str(emissions).lower()}",
            f"output_dir={out}",
            *overrides,
        ],
    )
    started = time.perf_counter()
    result = train(recipe, overwrite=True)
    wall = time.perf_counter() - started
    trained = result.metrics["train"]
    precision = result.metrics["model"]["precision"]
    mfu_keys = ("mfu", "model_tflops", "peak_tflops")
    mfu = {key: trained[key] for key in mfu_keys} if "mfu" in trained else _toolkit_mfu(recipe, trained, precision)
    return {
        "samples_per_second": trained["samples_per_second"],
        "tokens_per_second": trained["tokens_per_second"],
        "accuracy": result.metrics["validation"]["accuracy"],
        "precision": precision,
        "emissions_g": result.emissions.emissions_g if result.emissions else None,
        "train_wall_s": trained["runtime"],
        "total_wall_s": wall,
        **mfu,
    }


def _toolkit_mfu(recipe: Recipe, trained: dict, precision: str) -> dict:
    """Until the runner reports MFU itself: the same figure from the run's architecture."""
    flops = _classifier_flops_per_token(recipe.model.checkpoint)
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    return flops_utilization(flops, trained["tokens_per_second"], precision, device)


@cache
def _classifier_flops_per_token(checkpoint: str) -> int:
    model = AutoModelForSequenceClassification.from_pretrained(resolve_checkpoint(checkpoint), num_labels=2)
    return training_flops_per_token(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--data-dir", type=Path, default=DATA, help="folder with SST-2 train.jsonl, validation.jsonl")
    parser.add_argument("--skip-pad128", action="store_true", help="skip the slowest baseline (~5 min)")
    parser.add_argument("--skip-overhead", action="store_true", help="skip the run without codecarbon")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()

    hp = recipe_hyperparameters()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        results["toolkit"] = toolkit(args.data_dir, args.rows, args.epochs, Path(scratch) / "with-co2")
        if not args.skip_overhead:
            without = toolkit(args.data_dir, args.rows, args.epochs, Path(scratch) / "without-co2", emissions=False)
            results["toolkit_no_codecarbon"] = without
    results["plain_dynamic_padding"] = plain_trainer(args.data_dir, args.rows, args.epochs, hp)
    if not args.skip_pad128:
        results["plain_pad_to_128"] = plain_trainer(args.data_dir, args.rows, args.epochs, hp, pad_to_128=True)

    print(
        f"\nSST-2 {args.rows} rows from {args.data_dir}, {args.epochs:g} epoch(s), "
        f"{hp['checkpoint']}, batch {hp['batch_size']}"
    )
    print(f"{'run':24} {'samples/s':>10} {'tokens/s':>10} {'dev acc':>8} {'train s':>8} {'MFU':>7} precision")
    for name, r in results.items():
        print(
            f"{name:24} {r['samples_per_second']:10.1f} {r['tokens_per_second']:10.0f} "
            f"{r['accuracy']:8.4f} {r['train_wall_s']:8.1f} {100 * r['mfu']:6.2f}% {r['precision']}"
        )
    speed = results["toolkit"]["samples_per_second"]
    ratios = {
        f"toolkit / {name}": speed / r["samples_per_second"] for name, r in results.items() if name.startswith("plain")
    }
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}x samples/s")
    if "toolkit_no_codecarbon" in results:
        with_co2, without = results["toolkit"]["train_wall_s"], results["toolkit_no_codecarbon"]["train_wall_s"]
        print(f"codecarbon overhead: {100 * (with_co2 - without) / without:+.1f}% train wall time")
    (args.out / f"throughput-{args.rows}.json").write_text(json.dumps({"results": results, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
