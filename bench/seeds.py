"""Does the toolkit's speed cost accuracy? The toolkit default vs the plain Trainer over several seeds.

Per training-set size and seed, runs the default recipe (`recipes/sst2_demo.yaml`, one epoch, no
mid-training evaluation) and the plain `Trainer` script of `throughput.py` on the same seeded rows
with the same hyperparameters, then prints mean ± sd dev accuracy, samples/s, MFU and the
toolkit / plain ratios, and writes bench/results/seeds.json (after every run, so `--resume` can
pick up an interrupted bench). A seed changes the row sample, the head's initialisation and the
batch order of both runs alike. Method and results: bench/README.md.

    python bench/seeds.py --data-dir path/to/sst2 --rows 4000 8000 --seeds 5 [--full] [--pad128]
    python bench/seeds.py --rows 4000 --seeds 5 --variant random=training.group_by_length=false \\
        --plain-variant plain_bf16=precision=bf16 --set training.learning_rate=5e-5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from throughput import DATA, REPO, plain_trainer, recipe_hyperparameters, toolkit

FULL = "full"  # every training row, one seed
Runner = Callable[[Path, int | None, int, Path], dict]  # (data dir, rows, seed, scratch folder) -> results


def toolkit_variant(overrides: list[str], epochs: float, common: list[str]) -> Runner:
    """The default recipe with the bench's common overrides and this variant's own."""

    def run(data_dir: Path, rows: int | None, seed: int, scratch: Path) -> dict:
        return toolkit(data_dir, rows, epochs, scratch, [*common, f"training.seed={seed}", *overrides])

    return run


def plain_variant(options: dict, epochs: float, common: list[str]) -> Runner:
    """The plain Trainer script with the recipe's hyperparameters; `options` switch its levers."""

    def run(data_dir: Path, rows: int | None, seed: int, scratch: Path) -> dict:
        del scratch
        hp = recipe_hyperparameters([*common, f"training.seed={seed}"])
        return plain_trainer(data_dir, rows, epochs, hp, **options)

    return run


def parse_variant(spec: str) -> tuple[str, list[str]]:
    """`name=key=value,key=value` → (name, [key=value, ...])."""
    name, _, settings = spec.partition("=")
    return name, [item for item in settings.split(",") if item]


def build_variants(args: argparse.Namespace) -> dict[str, Runner]:
    variants: dict[str, Runner] = {
        "toolkit": toolkit_variant([], args.epochs, args.set),
        "plain": plain_variant({}, args.epochs, args.set),
    }
    for spec in args.variant:
        name, overrides = parse_variant(spec)
        variants[name] = toolkit_variant(overrides, args.epochs, args.set)
    for spec in args.plain_variant:
        name, options = parse_variant(spec)
        variants[name] = plain_variant(dict(option.split("=", 1) for option in options), args.epochs, args.set)
    return variants


def planned_runs(args: argparse.Namespace, variants: dict[str, Runner]) -> list[tuple[str, int, str]]:
    """(size, seed, variant) in the order run: variants interleaved per seed, so that a machine
    that slows down mid-bench slows every variant alike."""
    first_seed = recipe_hyperparameters(args.set)["seed"]
    seeds = [first_seed + i for i in range(args.seeds)]
    sizes = [str(rows) for rows in args.rows] + ([FULL] if args.full else [])
    runs = [
        (size, seed, name) for size in sizes for seed in (seeds if size != FULL else seeds[:1]) for name in variants
    ]
    if args.pad128:
        runs += [(str(rows), seeds[0], "plain_pad_to_128") for rows in args.rows]
    return runs


def run_one(args: argparse.Namespace, variants: dict[str, Runner], size: str, seed: int, name: str) -> dict:
    rows = None if size == FULL else int(size)
    with tempfile.TemporaryDirectory() as scratch:
        if name == "plain_pad_to_128":
            hp = recipe_hyperparameters([*args.set, f"training.seed={seed}"])
            result = plain_trainer(args.data_dir, rows, args.epochs, hp, pad_to_128=True)
        else:
            result = variants[name](args.data_dir, rows, seed, Path(scratch) / "run")
    return {"size": size, "seed": seed, "variant": name, **result}


def summarize(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """Per size and variant: n, mean ± sd of accuracy, mean speed and MFU, and the accuracy
    difference to the plain run of the same seed (paired: same rows, same initialisation)."""
    summary: dict[str, dict[str, dict]] = {}
    for size in dict.fromkeys(run["size"] for run in runs):
        at_size = [run for run in runs if run["size"] == size]
        plain = {run["seed"]: run["accuracy"] for run in at_size if run["variant"] == "plain"}
        summary[size] = {}
        for name in dict.fromkeys(run["variant"] for run in at_size):
            group = [run for run in at_size if run["variant"] == name]
            deltas = [run["accuracy"] - plain[run["seed"]] for run in group if run["seed"] in plain]
            summary[size][name] = {
                "n": len(group),
                "accuracy_mean": statistics.fmean(run["accuracy"] for run in group),
                "accuracy_sd": _sd([run["accuracy"] for run in group]),
                "delta_vs_plain_mean": statistics.fmean(deltas) if deltas else None,
                "delta_vs_plain_sd": _sd(deltas),
                "samples_per_second": statistics.fmean(run["samples_per_second"] for run in group),
                "tokens_per_second": statistics.fmean(run["tokens_per_second"] for run in group),
                "mfu": statistics.fmean(run["mfu"] for run in group),
                "precision": group[0]["precision"],
            }
    return summary


def _sd(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def speed_ratios(summary: dict[str, dict[str, dict]]) -> dict[str, dict[str, float]]:
    """toolkit samples/s over each baseline's, per size (means over seeds, same session)."""
    ratios: dict[str, dict[str, float]] = {}
    for size, variants in summary.items():
        toolkit_speed = variants.get("toolkit", {}).get("samples_per_second")
        if toolkit_speed:
            ratios[size] = {
                f"toolkit / {name}": toolkit_speed / stats["samples_per_second"]
                for name, stats in variants.items()
                if name.startswith("plain")
            }
    return ratios


def print_table(summary: dict[str, dict[str, dict]], ratios: dict[str, dict[str, float]]) -> None:
    print(
        f"\n{'rows':>6} {'variant':20} {'n':>2} {'dev accuracy':>17} {'Δ vs plain (paired)':>20} "
        f"{'samples/s':>10} {'tokens/s':>9} {'MFU':>7} precision"
    )
    for size, variants in summary.items():
        for name, s in variants.items():
            accuracy = f"{s['accuracy_mean']:.4f} ± {_fmt(s['accuracy_sd'])}"
            delta = _fmt_delta(s["delta_vs_plain_mean"], s["delta_vs_plain_sd"])
            print(
                f"{size:>6} {name:20} {s['n']:>2} {accuracy:>17} {delta:>20} {s['samples_per_second']:10.1f} "
                f"{s['tokens_per_second']:9.0f} {100 * s['mfu']:6.2f}% {s['precision']}"
            )
        for label, ratio in ratios.get(size, {}).items():
            print(f"{'':>6} {label}: {ratio:.2f}x samples/s")


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _fmt_delta(mean: float | None, sd: float | None) -> str:
    return "" if mean is None else f"{mean:+.4f} ± {_fmt(sd)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DATA, help="folder with SST-2 train.jsonl, validation.jsonl")
    parser.add_argument("--rows", type=int, nargs="*", default=[4000], help="training-set sizes (seeded samples)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per size: the recipe's seed, +1, +2, ...")
    parser.add_argument("--full", action="store_true", help="also every training row, one seed")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--pad128", action="store_true", help="also the pad-to-128 baseline, first seed per size")
    parser.add_argument("--set", action="append", default=[], help="recipe override for every run, e.g. KEY=VALUE")
    parser.add_argument("--variant", action="append", default=[], help="extra toolkit run: NAME=KEY=VALUE[,KEY=VALUE]")
    parser.add_argument(
        "--plain-variant", action="append", default=[], help="extra plain run: NAME=sampling=...[,precision=bf16]"
    )
    parser.add_argument("--resume", action="store_true", help="keep the runs already in the output file")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "seeds.json")
    args = parser.parse_args()

    variants = build_variants(args)
    done = json.loads(args.out.read_text())["runs"] if args.resume and args.out.is_file() else []
    finished = {(run["size"], run["seed"], run["variant"]) for run in done}
    runs = list(done)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for size, seed, name in planned_runs(args, variants):
        if (size, seed, name) in finished:
            continue
        runs.append(run_one(args, variants, size, seed, name))
        print(f"[seeds] {size} rows, seed {seed}, {name}: accuracy {runs[-1]['accuracy']:.4f}", flush=True)
        write(args, runs)
    summary = write(args, runs)
    print_table(summary, speed_ratios(summary))


def write(args: argparse.Namespace, runs: list[dict]) -> dict:
    summary = summarize(runs)
    config = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    document = {"config": config, "runs": runs, "summary": summary, "ratios": speed_ratios(summary)}
    args.out.write_text(json.dumps(document, indent=2))
    return summary


if __name__ == "__main__":
    main()
