"""Packed blocks vs one row per line for causal-LM training: real (non-padding) tokens per second,
same model (recipes/shakespeare_pretrain.yaml), data, batch size and number of steps.

    python bench/packing.py --data-dir path/to/tiny_shakespeare [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from recipe_runs import train_recipe

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "shakespeare_pretrain.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="Folder with train.txt and validation.txt")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, packing in (("packed", True), ("one_row_per_line", False)):
            overrides = {
                "data.train": args.data_dir / "train.txt",
                "data.validation": args.data_dir / "validation.txt",
                "data.packing": packing,
                "data.max_eval_rows": 200,
                "training.max_steps": args.steps,
                "training.eval_strategy": "no",
                "generation.max_new_tokens": 1,
            }
            metrics, _ = train_recipe(RECIPE, Path(scratch) / name, overrides)
            train = metrics["train"]
            results[name] = {
                "tokens_per_second": train["tokens_per_second"],
                "samples_per_second": train["samples_per_second"],
                "train_seconds": train["runtime"],
            }
            print(f"{name:18} {train['tokens_per_second']:10.0f} real tokens/s  {train['runtime']:6.1f} s")
    ratio = results["packed"]["tokens_per_second"] / results["one_row_per_line"]["tokens_per_second"]
    print(f"packed / one row per line: {ratio:.2f}x real tokens/s")
    out = REPO / "bench" / "results" / "packing.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, **results, "ratio": round(ratio, 3)}, indent=2))


if __name__ == "__main__":
    main()
