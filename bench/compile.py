"""Does `training.torch_compile` pay on a CPU? The demo's training step (MiniLM, batch 32, dynamic padding of
length-grouped batches, bf16 autocast, AdamW) run eagerly and under `torch.compile(dynamic=True)`, one mode per
process: the first step (the compile), the whole run and the median step after the first ten.

    python bench/compile.py eager --steps 60
    python bench/compile.py dynamic --steps 60
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import time
from pathlib import Path

from finetune_kit.quiet import quiet_libraries

quiet_libraries()

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from finetune_kit.models.checkpoints import resolve_checkpoint

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "recipes" / "data" / "sst2" / "train.jsonl"
CHECKPOINT = "sentence-transformers/all-MiniLM-L6-v2"  # the packaged offline copy


def batches(size: int, seed: int) -> list[list[dict]]:
    """Length-grouped batches in shuffled order, as the toolkit trains."""
    rows = [json.loads(line) for line in TRAIN.read_text().splitlines()]
    rng = random.Random(seed)
    rng.shuffle(rows)
    rows.sort(key=lambda row: len(row["sentence"]))
    grouped = [rows[i : i + size] for i in range(0, len(rows), size)]
    rng.shuffle(grouped)
    return grouped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["eager", "dynamic"])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    folder = resolve_checkpoint(CHECKPOINT)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if args.mode == "dynamic":
        model.compile(dynamic=True)
    seconds = []
    for batch in itertools.islice(itertools.cycle(batches(32, 0)), args.steps):
        texts = [row["sentence"] for row in batch]
        inputs = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**inputs, labels=torch.tensor([r["label"] for r in batch])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seconds.append(time.perf_counter() - started)
    later = statistics.median(seconds[10:])
    print(
        json.dumps(
            {
                "mode": args.mode,
                "steps": args.steps,
                "first_step_s": round(seconds[0], 1),
                "total_s": round(sum(seconds), 1),
                "median_step_s": round(later, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
