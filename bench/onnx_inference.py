"""ONNX Runtime (fp32 and int8) vs PyTorch on CPU, for one finished classification or NER run
(the SST-2 run folder of `recipes/sst2_full.yaml` or `sst2_demo.yaml`): latency at batch 1, throughput
at batch 32, mg CO2eq per 1,000 predictions (codecarbon) and the run's metric on its validation rows.
Exports the run first (`RUN/onnx/`, int8 included) when that is not done yet. Method: bench/README.md.

    python bench/onnx_inference.py runs/sst2-full [--latency-runs 200] [--passes 3] [--rows 872]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from finetune_kit.quiet import quiet_libraries

quiet_libraries()  # before the libraries: bitsandbytes (imported by peft) logs on import

import torch

from finetune_kit.console import ConsoleReport
from finetune_kit.data import load_data
from finetune_kit.emissions.inference import InferenceMeter
from finetune_kit.export import export_run
from finetune_kit.export.parity import Batch, compare, labelled_batches, logits_on
from finetune_kit.inference import GRAPHS, OnnxLogits, open_run
from finetune_kit.runs import Layout
from finetune_kit.tasks.logits import LogitsOf, torch_logits

REPO = Path(__file__).resolve().parent.parent


def latency_ms(logits_of: LogitsOf, singles: list[Batch], runs: int) -> float:
    """Median wall time of one row's forward pass, rows taken in turn, after a few warm-up calls."""
    for single in singles[:5]:
        logits_of(single.inputs)
    times = []
    for i in range(runs):
        started = time.perf_counter()
        logits_of(singles[i % len(singles)].inputs)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def throughput_and_energy(logits_of: LogitsOf, batches: list[Batch], passes: int, meter: InferenceMeter) -> float:
    """Rows per second over `passes` passes at batch 32, measured by codecarbon as they run."""
    logits_on(batches[:2], logits_of)  # warm-up
    rows = sum(len(batch.labels) for batch in batches)
    started = time.perf_counter()
    with meter.measuring():
        for _ in range(passes):
            logits_on(batches, logits_of)
    meter.add(rows * passes)
    return rows * passes / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="A finished classification or NER run folder")
    parser.add_argument("--latency-runs", type=int, default=200, help="Batch-1 calls per engine (median taken)")
    parser.add_argument("--passes", type=int, default=3, help="Passes over the rows at batch 32 per engine")
    parser.add_argument("--rows", type=int, default=None, help="Validation rows used (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "onnx_inference.json")
    args = parser.parse_args()

    if not (args.run_dir / Layout.ONNX / GRAPHS["int8"]).is_file():
        for line in export_run(args.run_dir, int8=True, progress=ConsoleReport()).lines():
            print(line)
    run = open_run(args.run_dir)
    validation = load_data(run.recipe.data, run.recipe.training.seed)["validation"]
    if args.rows is not None:
        validation = validation.select(range(min(args.rows, len(validation))))
    batches = labelled_batches(run.task, run.tokenizer, validation)
    singles = labelled_batches(run.task, run.tokenizer, validation.select(range(min(64, len(validation)))), size=1)
    folder = args.run_dir / Layout.ONNX
    engines: dict[str, LogitsOf] = {
        "pytorch": torch_logits(run.model),
        "onnx fp32": OnnxLogits(folder / GRAPHS["fp32"]),
        "onnx int8": OnnxLogits(folder / GRAPHS["int8"]),
    }
    reference = logits_on(batches, engines["pytorch"])
    results = {}
    for name, logits_of in engines.items():
        with InferenceMeter(run.recipe.emissions, "predictions", name) as meter:
            rows_per_second = throughput_and_energy(logits_of, batches, args.passes, meter)
        parity = compare(run.task, run.tokenizer, batches, reference, logits_on(batches, logits_of), name)
        energy = meter.result
        results[name] = {
            "latency_ms_batch1": latency_ms(logits_of, singles, args.latency_runs),
            "rows_per_second_batch32": rows_per_second,
            "mg_co2eq_per_1000": energy.mg_per_thousand if energy else None,
            "wh_per_1000": energy.wh_per_thousand if energy else None,
            parity.metric: parity.onnx,
            "labels_agreeing_with_pytorch": (parity.compared - parity.differing) / parity.compared,
        }
    base = results["pytorch"]
    for row in results.values():
        row["latency_speedup"] = base["latency_ms_batch1"] / row["latency_ms_batch1"]
        row["throughput_ratio"] = row["rows_per_second_batch32"] / base["rows_per_second_batch32"]
        measured = row["mg_co2eq_per_1000"] and base["mg_co2eq_per_1000"]
        row["co2_ratio"] = row["mg_co2eq_per_1000"] / base["mg_co2eq_per_1000"] if measured else None

    metric = run.task.main_metric
    print(f"\n{args.run_dir}: {len(validation)} validation rows, {torch.get_num_threads()} threads")
    print(f"| engine | ms at batch 1 | rows/s at batch 32 | mg CO2eq / 1k | {metric} | x latency | x rows/s | x CO2 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in results.items():
        mg = f"{row['mg_co2eq_per_1000']:.3g}" if row["mg_co2eq_per_1000"] is not None else "-"
        co2 = f"{row['co2_ratio']:.2f}" if row["co2_ratio"] is not None else "-"
        print(
            f"| {name} | {row['latency_ms_batch1']:.2f} | {row['rows_per_second_batch32']:.0f} | {mg} | "
            f"{row[metric]:.4f} | {row['latency_speedup']:.2f} | {row['throughput_ratio']:.2f} | {co2} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "run": run.recipe.name,
        "rows": len(validation),
        "threads": torch.get_num_threads(),
        "latency_runs": args.latency_runs,
        "passes": args.passes,
        "results": results,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
