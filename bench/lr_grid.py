"""Does the toolkit's speed hold at learning rates the recipe does not use? A grid of lr × warmup.

For each point of the grid and each seed, runs the default recipe (`recipes/sst2_demo.yaml` with
that learning rate and warmup) and the plain `Trainer` script with the same hyperparameters on the
same seeded rows, back to back (`seeds.py` does the runs). Prints, per point, both dev accuracies
(mean ± sd over seeds), the paired accuracy difference, the samples/s ratio, and whether each
half of the bar holds: the toolkit within `--max-drop` points of the plain script, at
`--min-speedup` × its samples/s. Writes bench/results/lr_grid.json after every run (`--resume`
picks up an interrupted grid). Time a grid on a machine doing nothing else: the ratio is a speed.
Method: docs/benchmarks/speed.md.

    python bench/lr_grid.py --data-dir path/to/sst2 --rows 8000 --seeds 3
    python bench/lr_grid.py --learning-rates 3e-5 5e-5 1e-4 --warmups 0 0.1 --seeds 3 --resume
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

from seeds import build_variants, run_one, speed_ratios, summarize
from throughput import DATA, REPO, recipe_hyperparameters


def point_arguments(args: argparse.Namespace, learning_rate: float, warmup: float, seed: int) -> argparse.Namespace:
    """The `seeds.py` arguments of one grid point and seed: the toolkit and the plain script only."""
    overrides = [
        *args.set,
        f"training.learning_rate={learning_rate}",
        f"training.warmup_ratio={warmup}",
        f"training.seed={seed}",
    ]
    return argparse.Namespace(data_dir=args.data_dir, epochs=args.epochs, set=overrides, variant=[], plain_variant=[])


def point_summary(runs: list[dict], max_drop: float, min_speedup: float) -> dict:
    """One point's accuracies, paired difference (points), speed ratio and verdict."""
    stats = summarize(runs)[runs[0]["size"]]
    ratio = speed_ratios({"point": stats})["point"]["toolkit / plain"]
    plain = {run["seed"]: run["accuracy"] for run in runs if run["variant"] == "plain"}
    deltas = [
        100 * (run["accuracy"] - plain[run["seed"]])
        for run in runs
        if run["variant"] == "toolkit" and run["seed"] in plain
    ]
    delta = statistics.fmean(deltas)
    return {
        "seeds": len(deltas),
        "plain_accuracy": stats["plain"]["accuracy_mean"],
        "plain_sd": stats["plain"]["accuracy_sd"],
        "toolkit_accuracy": stats["toolkit"]["accuracy_mean"],
        "toolkit_sd": stats["toolkit"]["accuracy_sd"],
        "delta_points": delta,
        "delta_points_per_seed": deltas,
        "speedup": ratio,
        "accuracy_held": delta >= -max_drop,
        "speed_held": ratio >= min_speedup,
    }


def print_table(points: dict[str, dict]) -> None:
    print(
        f"\n{'lr':>7} {'warmup':>6} {'n':>2} {'plain':>15} {'toolkit':>15} {'Δ points (per seed)':>32} "
        f"{'speed-up':>8} {'accuracy held':>13} {'speed held':>10}"
    )
    for key, p in points.items():
        learning_rate, warmup = key.split("/")
        per_seed = " ".join(f"{d:+.2f}" for d in p["delta_points_per_seed"])
        print(
            f"{learning_rate:>7} {warmup:>6} {p['seeds']:>2} {p['plain_accuracy']:.4f} ± {_fmt(p['plain_sd'])} "
            f"{p['toolkit_accuracy']:.4f} ± {_fmt(p['toolkit_sd'])} {p['delta_points']:+6.2f} ({per_seed}) "
            f"{p['speedup']:7.2f}x {_verdict(p['accuracy_held']):>13} {_verdict(p['speed_held']):>10}"
        )


def _verdict(held: bool) -> str:
    return "yes" if held else "NO"


def _fmt(value: float | None) -> str:
    return "–     " if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DATA, help="folder with SST-2 train.jsonl, validation.jsonl")
    parser.add_argument("--rows", type=int, default=8000, help="training rows (a seeded sample)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per point: the recipe's seed, +1, +2, ...")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[3e-5, 5e-5, 1e-4])
    parser.add_argument("--warmups", type=float, nargs="+", default=[0.0, 0.1], help="warmup ratios")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--set", action="append", default=[], help="recipe override for every run, e.g. KEY=VALUE")
    parser.add_argument("--max-drop", type=float, default=0.5, help="accuracy points the toolkit may lose")
    parser.add_argument("--min-speedup", type=float, default=3.0, help="samples/s ratio the toolkit must reach")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in the output file")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "lr_grid.json")
    args = parser.parse_args()

    runs: list[dict] = json.loads(args.out.read_text())["runs"] if args.resume and args.out.is_file() else []
    finished = {(run["learning_rate"], run["warmup_ratio"], run["seed"], run["variant"]) for run in runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    first_seed = recipe_hyperparameters(args.set)["seed"]
    # seed by seed over the whole grid: a grid stopped early still has every point at equal seeds
    for seed in range(first_seed, first_seed + args.seeds):
        for learning_rate, warmup in itertools.product(args.learning_rates, args.warmups):
            point_args = point_arguments(args, learning_rate, warmup, seed)
            variants = build_variants(point_args)
            for name in ("toolkit", "plain"):
                if (learning_rate, warmup, seed, name) in finished:
                    continue
                run = run_one(point_args, variants, str(args.rows), seed, name)
                runs.append({"learning_rate": learning_rate, "warmup_ratio": warmup, **run})
                print(
                    f"[grid] lr {learning_rate:g}, warmup {warmup:g}, seed {seed}, {name}: "
                    f"accuracy {run['accuracy']:.4f}, {run['samples_per_second']:.1f} samples/s",
                    flush=True,
                )
                write(args, runs)
    print_table(write(args, runs))


def write(args: argparse.Namespace, runs: list[dict]) -> dict[str, dict]:
    """Every run and every complete point's summary, rewritten after each run."""
    points: dict[str, dict] = {}
    for key in dict.fromkeys((run["learning_rate"], run["warmup_ratio"]) for run in runs):
        at_point = [run for run in runs if (run["learning_rate"], run["warmup_ratio"]) == key]
        if {run["variant"] for run in at_point} == {"toolkit", "plain"}:
            points[f"{key[0]:g}/{key[1]:g}"] = point_summary(at_point, args.max_drop, args.min_speedup)
    config = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    args.out.write_text(json.dumps({"config": config, "runs": runs, "points": points}, indent=2))
    return points


if __name__ == "__main__":
    main()
