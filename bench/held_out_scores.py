"""Finished chat runs (sft, dpo, grpo) scored again by generation on another held-out file: the same
metric as the run's own `generation` scores, on more prompts.

Why: a recipe's bundled test set is small (SST-2: 200 prompts), so an accuracy near a bar is within
±2.5 points (one standard error) of it; all 872 GLUE dev sentences narrow that to ±1.2. Each run's
weights are loaded as `finetune-kit generate` loads them, and its recipe's generation settings
(greedy, max_new_tokens, batch) answer every prompt in the run's training precision (bf16 autocast
where the machine has it), as the run scored its own held-out prompts: on the run's own test file the
scores are its metrics.json ones. Prints one line per run and metric, with the
standard error of an accuracy (a file of one task); `--output` keeps them as JSON.

    python bench/held_out_scores.py runs/grpo-a runs/grpo-b --test data/sst2_dev872/test.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from datasets import DatasetDict, load_dataset

from finetune_kit import inference
from finetune_kit.training.precision import autocast, resolve_precision


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders with held-out generation scores")
    parser.add_argument("--test", type=Path, required=True, help="conversations (JSONL), each with its metric column")
    parser.add_argument("--output", type=Path, help="write the scores as JSON here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    rows = load_dataset("json", data_files=str(args.test), split="train")
    results = {}
    for run_dir in args.runs:
        started = time.perf_counter()
        run = inference.open_run(run_dir)
        device = next(run.model.parameters()).device
        with autocast(resolve_precision(run.recipe.training.precision), device):
            # the task's held-out scoring alone, which a run also does before it trains
            scored = run.task.results_before_training(run.model, run.tokenizer, DatasetDict(test=rows))
        scores = scored["generation"]
        seconds = time.perf_counter() - started
        results[str(run_dir)] = scores
        for name, score in scores.items():
            one_group = len(scores) == 1  # then every row counts towards it
            spread = f" ± {math.sqrt(score * (1 - score) / len(rows)):.3f}" if one_group and "accuracy" in name else ""
            print(f"{run_dir}  {name} {score:.3f}{spread}  ({len(rows)} prompts, {seconds:.0f} s)", flush=True)
    if args.output:
        args.output.write_text(json.dumps({"test": str(args.test), "rows": len(rows), "scores": results}, indent=2))


if __name__ == "__main__":
    main()
