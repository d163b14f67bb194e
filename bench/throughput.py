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
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
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

from finetune_kit.config import load_recipe
from finetune_kit.models import resolve_checkpoint
from finetune_kit.training import train

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "sst2_demo.yaml"
DATA = REPO / "recipes" / "data" / "sst2"


def plain_trainer(data_dir: Path, rows: int, epochs: float, pad_to_128: bool, hp: dict) -> dict:
    """What a user writes by hand: the transformers example-script way, fp32, random batches."""
    set_seed(hp["seed"])
    source = resolve_checkpoint(hp["checkpoint"])
    tokenizer = AutoTokenizer.from_pretrained(source)
    files = {"train": str(data_dir / "train.jsonl"), "validation": str(data_dir / "validation.jsonl")}
    data = load_dataset("json", data_files=files)
    if rows < len(data["train"]):  # the same seeded sample the toolkit's data.max_train_rows takes
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
            warmup_steps=hp["warmup_ratio"],
            weight_decay=hp["weight_decay"],
            seed=hp["seed"],
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
    return {
        "samples_per_second": output.metrics["train_samples_per_second"],
        "tokens_per_second": trainer.state.num_input_tokens_seen / output.metrics["train_runtime"],
        "accuracy": evaluation["eval_accuracy"],
        "train_wall_s": wall,
    }


def toolkit(data_dir: Path, rows: int, epochs: float, emissions: bool, out: Path) -> dict:
    """The bundled default recipe, unchanged but for the data, slice, epochs and output folder."""
    recipe = load_recipe(
        RECIPE,
        [
            f"data.train={data_dir / 'train.jsonl'}",
            f"data.validation={data_dir / 'validation.jsonl'}",
            f"data.max_train_rows={rows}",
            f"training.epochs={epochs}",
            "training.eval_strategy=no",
            f"emissions.enabled={str(emissions).lower()}",
            f"output_dir={out}",
        ],
    )
    started = time.perf_counter()
    result = train(recipe, overwrite=True)
    wall = time.perf_counter() - started
    return {
        "samples_per_second": result.metrics["train"]["samples_per_second"],
        "tokens_per_second": result.metrics["train"]["tokens_per_second"],
        "accuracy": result.metrics["validation"]["accuracy"],
        "precision": result.metrics["model"]["precision"],
        "emissions_g": result.emissions.emissions_g if result.emissions else None,
        "train_wall_s": result.metrics["train"]["runtime"],
        "total_wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--data-dir", type=Path, default=DATA, help="folder with SST-2 train.jsonl, validation.jsonl")
    parser.add_argument("--skip-pad128", action="store_true", help="skip the slowest baseline (~5 min)")
    parser.add_argument("--skip-overhead", action="store_true", help="skip the run without codecarbon")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()

    t = load_recipe(RECIPE).training
    hp = {
        "checkpoint": load_recipe(RECIPE).model.checkpoint,
        "batch_size": t.batch_size,
        "learning_rate": t.learning_rate,
        "warmup_ratio": t.warmup_ratio,
        "weight_decay": t.weight_decay,
        "max_length": t.max_length,
        "seed": t.seed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        results["toolkit"] = toolkit(args.data_dir, args.rows, args.epochs, True, Path(scratch) / "with-co2")
        if not args.skip_overhead:
            without = toolkit(args.data_dir, args.rows, args.epochs, False, Path(scratch) / "without-co2")
            results["toolkit_no_codecarbon"] = without
    results["plain_dynamic_padding"] = plain_trainer(args.data_dir, args.rows, args.epochs, False, hp)
    if not args.skip_pad128:
        results["plain_pad_to_128"] = plain_trainer(args.data_dir, args.rows, args.epochs, True, hp)

    print(
        f"\nSST-2 {args.rows} rows from {args.data_dir}, {args.epochs:g} epoch(s), "
        f"{hp['checkpoint']}, batch {hp['batch_size']}"
    )
    print(f"{'run':24} {'samples/s':>10} {'tokens/s':>10} {'dev acc':>8} {'train s':>8}")
    for name, r in results.items():
        print(
            f"{name:24} {r['samples_per_second']:10.1f} {r['tokens_per_second']:10.0f} "
            f"{r['accuracy']:8.4f} {r['train_wall_s']:8.1f}"
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
