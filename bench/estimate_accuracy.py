"""How close `finetune-kit estimate` comes to the run it predicts, for shipped recipes of each task family.

For each recipe: `finetune-kit estimate RECIPE --json`, then the real `finetune-kit train RECIPE`, each as its own
process, one after the other on the same machine. Prints the predicted and the measured wall time (codecarbon's
tracked duration) and energy with the |error| in %, and what the calibration cost as a share of the run.
Method: bench/README.md.

    python bench/estimate_accuracy.py --data-dir ../shared/data [--recipe sst2_demo multi30k_en_de]
        [--set data.max_train_rows=2000 ...] [--work-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recipe_runs import train_recipe

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
Overrides = dict[str, Any]


def bundled(data: Path) -> Overrides:
    del data  # the demo's sample ships with the recipes
    return {}


def conll(data: Path) -> Overrides:
    folder = data / "ner" / "conll2003"
    return {f"data.{split}": folder / f"{split}.jsonl" for split in ("train", "validation", "test")}


def shakespeare(data: Path) -> Overrides:
    folder = data / "clm" / "tiny_shakespeare"
    return {"data.train": folder / "train.txt", "data.validation": folder / "validation.txt"}


def multi30k(data: Path) -> Overrides:
    folder = data / "translation" / "multi30k_en_de"
    return {f"data.{split}": folder / f"{split}.jsonl" for split in ("train", "validation", "test")}


# recipe → its data as --set overrides: classification, NER, causal LM (with generation), translation
RUNS: dict[str, Callable[[Path], Overrides]] = {
    "sst2_demo": bundled,
    "conll2003_ner": conll,
    "shakespeare_pretrain": shakespeare,
    "multi30k_en_de": multi30k,
}


def estimate_recipe(recipe: Path, overrides: Overrides) -> tuple[dict[str, Any], float]:
    """The estimate's JSON, and the estimate process's own wall time (loading, calibrating, printing)."""
    sets = [item for key, value in overrides.items() for item in ("--set", f"{key}={value}")]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "finetune_kit", "estimate", str(recipe), "--json", *sets],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"estimate {recipe.name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout), time.perf_counter() - started


def error_percent(predicted: float, actual: float) -> float:
    return round(100 * abs(predicted - actual) / actual, 1)


def compare(name: str, data: Path, work: Path, caps: Overrides) -> dict[str, Any]:
    recipe = RECIPES / f"{name}.yaml"
    overrides = {**RUNS[name](data), **caps}
    estimate, estimate_wall = estimate_recipe(recipe, overrides)
    run_dir = work / name
    shutil.rmtree(run_dir, ignore_errors=True)
    metrics, _ = train_recipe(recipe, run_dir, overrides)
    actual = {"wall_s": metrics["duration_s"], "kwh": metrics["energy_kwh"], "co2_g": metrics["emissions_g"]}
    calibration = estimate["calibration"]
    return {
        "predicted": {key: estimate[key] for key in ("wall_s", "kwh", "co2_g", "low", "high")},
        "actual": actual,
        "wall_error_percent": error_percent(estimate["wall_s"], actual["wall_s"]),
        "energy_error_percent": error_percent(estimate["kwh"], actual["kwh"]),
        "within_range": estimate["low"]["wall_s"] <= actual["wall_s"] <= estimate["high"]["wall_s"],
        "calibration": {
            "tracked_s": calibration["duration_s"],
            "kwh": calibration["energy_kwh"],
            "process_wall_s": round(estimate_wall, 1),
            "energy_percent_of_run": round(100 * calibration["energy_kwh"] / actual["kwh"], 1),
        },
        "caps": {key: str(value) for key, value in caps.items()},
        "steps": metrics["train"]["steps"],
    }


def parse_sets(items: list[str]) -> Overrides:
    pairs = [item.split("=", 1) for item in items]
    for item, pair in zip(items, pairs, strict=True):
        if len(pair) != 2:
            sys.exit(f"--set {item}: expected key=value")
    return dict(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="Folder of the shared data sets")
    parser.add_argument("--recipe", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--set", dest="sets", action="append", default=[], help="Cap for every run: key=value")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "estimate-accuracy", help="Runs, kept")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "estimate_accuracy.json")
    args = parser.parse_args()
    data, work, caps = args.data_dir.resolve(), args.work_dir.resolve(), parse_sets(args.sets)
    results = {}
    print(
        f"{'recipe':22} {'wall pred':>9} {'wall real':>9} {'err %':>6} {'kWh pred':>9} {'kWh real':>9} {'err %':>6}"
        f" {'calib. % kWh':>12}"
    )
    for name in args.recipe:
        result = results[name] = compare(name, data, work, caps)
        predicted, actual = result["predicted"], result["actual"]
        print(
            f"{name:22} {predicted['wall_s']:9.1f} {actual['wall_s']:9.1f} {result['wall_error_percent']:6.1f}"
            f" {predicted['kwh']:9.2e} {actual['kwh']:9.2e} {result['energy_error_percent']:6.1f}"
            f" {result['calibration']['energy_percent_of_run']:12.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
