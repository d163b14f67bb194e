"""2-process DDP (torchrun, gloo) vs 1 process on the same CPU: the bundled SST-2 demo recipe, the
same global batch (2 x 16 vs 1 x 32), rows, epochs and seed. Prints wall time of the training
loop, samples/s and dev accuracy of each, and the speed ratio.

    python bench/ddp.py [--rows 2000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from recipe_runs import train_recipe

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "sst2_demo.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, processes, batch in (("1_process", 1, 32), ("ddp_2_processes", 2, 16)):
            overrides = {
                "data.max_train_rows": args.rows,
                "training.epochs": 1,
                "training.batch_size": batch,
                "training.eval_strategy": "no",
            }
            metrics, _ = train_recipe(RECIPE, Path(scratch) / name, overrides, processes=processes)
            results[name] = {
                "train_seconds": metrics["train"]["runtime"],
                "samples_per_second": args.rows / metrics["train"]["runtime"],
                "accuracy": metrics["validation"]["accuracy"],
                "emissions_g": metrics.get("emissions_g"),
            }
            r = results[name]
            speed = f"{r['train_seconds']:7.1f} s  {r['samples_per_second']:7.1f} samples/s"
            print(f"{name:16} {speed}  acc {r['accuracy']:.4f}")
    speedup = results["1_process"]["train_seconds"] / results["ddp_2_processes"]["train_seconds"]
    print(f"DDP 2 processes / 1 process: {speedup:.2f}x training speed")
    out = REPO / "bench" / "results" / "ddp.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": args.rows, **results, "speedup": round(speedup, 3)}, indent=2))


if __name__ == "__main__":
    main()
