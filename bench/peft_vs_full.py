"""LoRA vs full fine-tuning of MiniLM on SST-2, same data, epochs, batch size and seed.

Each run is a separate `finetune-kit train` process, so its peak memory is its own. Prints dev
accuracy, trainable parameters, saved model size, peak memory and samples/s, and the LoRA / full
ratios. Method: bench/README.md.

    python bench/peft_vs_full.py [--data-dir path/to/sst2] [--rows 4000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from recipe_runs import train_recipe

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "sst2_demo.yaml"
DATA = REPO / "recipes" / "data" / "sst2"
# Learning rates are each method's usual one: the recipe's 1e-4 for full fine-tuning; unset (null)
# for LoRA, which then takes the classification family's adapter defaults (learning rate 1e-3, r 8,
# alpha 16, all linear layers: finetune_kit/models/adapters.py), as recipes/sst2_lora.yaml does.
FULL = {"training.learning_rate": 1e-4}
LORA = {"training.learning_rate": "null", "peft.method": "lora"}


def run(name: str, extra: dict, args: argparse.Namespace, out: Path) -> dict:
    run_dir = out / name
    overrides = {
        "data.train": args.data_dir / "train.jsonl",
        "data.validation": args.data_dir / "validation.jsonl",
        "data.max_train_rows": args.rows,
        "training.epochs": args.epochs,
        "training.eval_strategy": "no",
        **extra,
    }
    metrics, peak_mb = train_recipe(RECIPE, run_dir, overrides)
    weights = list((run_dir / "model").glob("*.safetensors"))
    return {
        "accuracy": metrics["validation"]["accuracy"],
        "trainable_parameters": metrics["model"]["trainable_parameters"],
        "parameters": metrics["model"]["parameters"],
        "trainable_percent": metrics["model"]["trainable_percent"],
        "saved_mb": sum(p.stat().st_size for p in weights) / 1e6,
        "samples_per_second": metrics["train"]["samples_per_second"],
        "train_seconds": metrics["train"]["runtime"],
        "emissions_g": metrics.get("emissions_g"),
        "peak_rss_mb": peak_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DATA, help="Folder with train.jsonl and validation.jsonl")
    parser.add_argument("--rows", type=int, default=4000, help="Training rows (seeded sample)")
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        results = {name: run(name, extra, args, Path(scratch)) for name, extra in (("full", FULL), ("lora", LORA))}
    full, lora = results["full"], results["lora"]
    print(f"{'run':6} {'dev acc':>8} {'trainable':>12} {'%':>7} {'saved MB':>9} {'peak MB':>8} {'samples/s':>10}")
    for name, r in results.items():
        print(
            f"{name:6} {r['accuracy']:8.4f} {r['trainable_parameters']:12,} {r['trainable_percent']:7.3f}"
            f" {r['saved_mb']:9.2f} {r['peak_rss_mb']:8.0f} {r['samples_per_second']:10.1f}"
        )
    summary = {
        "accuracy_gap_points": round(100 * (full["accuracy"] - lora["accuracy"]), 2),
        "trainable_percent": lora["trainable_percent"],
        "adapter_vs_full_size_percent": round(100 * lora["saved_mb"] / full["saved_mb"], 2),
        "peak_memory_ratio": round(lora["peak_rss_mb"] / full["peak_rss_mb"], 3),
        "samples_per_second_ratio": round(lora["samples_per_second"] / full["samples_per_second"], 3),
    }
    for key, value in summary.items():
        print(f"{key}: {value}")
    out = REPO / "bench" / "results" / "peft_vs_full.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": {"rows": args.rows, "epochs": args.epochs}, **results, **summary}, indent=2))


if __name__ == "__main__":
    main()
