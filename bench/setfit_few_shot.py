"""SetFit against ordinary fine-tuning when only a few labelled rows exist, over seeds.

    python bench/setfit_few_shot.py --data-dir path/to/sst2 --seeds 5 --shots 8 --full-rows 0 --without-templates
    python bench/setfit_few_shot.py --data-dir path/to/sst2 --seeds 2 --shots 64 --full-rows 8000 \
        --checkpoint sentence-transformers/all-mpnet-base-v2 --num-iterations 5

Per seed, back to back, each a `finetune-kit train` process on the same rows:
- `setfit`: recipes/sst2_setfit.yaml with `data.shots_per_class` N (a seeded, balanced sample of SST-2 train),
  its 2 templated examples per label ("This sentence is negative", ...) added to the N-per-class rows;
- with `--without-templates`, `setfit, no templates`: the same without them (`setfit.templated_examples` 0);
- `classification`: recipes/sst2_demo.yaml (the default classifier: MiniLM, lr 1e-4, warmup 0.1) on the same
  N-per-class rows (same seed, same sampler), batch 16, for as many optimizer steps as SetFit took;
- once per seed with `--full-rows R`: the default classifier on R seeded rows, one epoch, as the many-row reference.

`--checkpoint` puts another encoder under every run (SetFit's and the classifiers' alike);
`--num-iterations` sets SetFit's pairs per text.

Accuracy is on the full SST-2 dev set (872 rows). Printed: mean ± sd per run kind, the paired differences,
and each run's training grams CO2eq; written to bench/results/setfit_few_shot.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from recipe_runs import train_recipe

REPO = Path(__file__).resolve().parent.parent
SETFIT, CLASSIFIER = REPO / "recipes" / "sst2_setfit.yaml", REPO / "recipes" / "sst2_demo.yaml"


def run(recipe: Path, folder: Path, overrides: dict) -> dict:
    metrics, _ = train_recipe(recipe, folder, overrides)
    return {
        "accuracy": metrics["validation"]["accuracy"],
        "steps": metrics["train"]["steps"],
        "train_s": metrics["train"]["runtime"],
        "emissions_g": metrics.get("emissions_g"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="SST-2 with train.jsonl and validation.jsonl")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shots", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--full-rows", type=int, default=8000, help="The many-row classifier's rows (0: skip)")
    parser.add_argument("--checkpoint", help="The encoder of every run (default: the recipes' MiniLM)")
    parser.add_argument("--num-iterations", type=int, help="SetFit's pairs per training text (default: the recipe's)")
    parser.add_argument("--without-templates", action="store_true", help="Also run SetFit without templated examples")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "setfit_few_shot.json")
    args = parser.parse_args()

    data = {
        "data.train": args.data_dir.resolve() / "train.jsonl",
        "data.validation": args.data_dir.resolve() / "validation.jsonl",
    }
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="setfit-bench-") as scratch:
        for seed in range(42, 42 + args.seeds):
            common = {**data, "training.seed": seed, "emissions.measure_power_secs": 1}
            if args.checkpoint:
                common["model.checkpoint"] = args.checkpoint
            for shots in args.shots:
                few = {**common, "data.shots_per_class": shots}
                pairs = {"setfit.num_iterations": args.num_iterations} if args.num_iterations else {}
                setfit = run(SETFIT, Path(scratch) / f"setfit-{shots}-{seed}", {**few, **pairs})
                results.setdefault(f"setfit {shots}/class", []).append({"seed": seed, **setfit})
                if args.without_templates:
                    bare = {**few, **pairs, "setfit.templated_examples": 0}
                    untemplated = run(SETFIT, Path(scratch) / f"setfit-bare-{shots}-{seed}", bare)
                    results.setdefault(f"setfit {shots}/class, no templates", []).append({"seed": seed, **untemplated})
                    print(f"seed {seed}, {shots}/class: setfit without templates {untemplated['accuracy']:.4f}")
                baseline = {
                    **few,
                    "training.batch_size": 16,
                    "training.max_steps": setfit["steps"],
                    "training.eval_strategy": "no",
                }
                plain = run(CLASSIFIER, Path(scratch) / f"classifier-{shots}-{seed}", baseline)
                results.setdefault(f"classifier {shots}/class", []).append({"seed": seed, **plain})
                print(
                    f"seed {seed}, {shots}/class: setfit {setfit['accuracy']:.4f}, classifier {plain['accuracy']:.4f}"
                )
            if args.full_rows:
                full = {
                    **common,
                    "data.max_train_rows": args.full_rows,
                    "training.epochs": 1,
                    "training.eval_strategy": "no",
                }
                many = run(CLASSIFIER, Path(scratch) / f"classifier-full-{seed}", full)
                results.setdefault(f"classifier {args.full_rows} rows", []).append({"seed": seed, **many})
                print(f"seed {seed}, {args.full_rows} rows: classifier {many['accuracy']:.4f}")
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(results, indent=2) + "\n")

    print("\n| run | seeds | dev accuracy mean ± sd | steps | train s | g CO2eq |\n|---|---:|---:|---:|---:|---:|")
    for name, rows in results.items():
        accuracy = [r["accuracy"] for r in rows]
        sd = statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0
        seconds = statistics.mean(r["train_s"] for r in rows)
        grams = statistics.mean(r["emissions_g"] or 0 for r in rows)
        mean = statistics.mean(accuracy)
        print(f"| {name} | {len(rows)} | {mean:.4f} ± {sd:.4f} | {rows[0]['steps']} | {seconds:.1f} | {grams:.3g} |")
    for shots in args.shots:
        for setfit in (name for name in results if name.startswith(f"setfit {shots}/class")):
            gaps = [
                100 * (s["accuracy"] - c["accuracy"])
                for s, c in zip(results[setfit], results[f"classifier {shots}/class"], strict=True)
            ]
            each = ", ".join(f"{g:+.1f}" for g in gaps)
            print(f"{setfit} − classifier, paired: {statistics.mean(gaps):+.2f} points ({each})")
            if args.full_rows:
                gap = 100 * (
                    statistics.mean(r["accuracy"] for r in results[setfit])
                    - statistics.mean(r["accuracy"] for r in results[f"classifier {args.full_rows} rows"])
                )
                print(f"{setfit} − classifier on {args.full_rows} rows: {gap:+.2f} points")


if __name__ == "__main__":
    main()
