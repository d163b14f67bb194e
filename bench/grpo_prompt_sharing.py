"""GRPO steps: the toolkit's trainer, which computes each group's prompt once, against TRL's stock
`GRPOTrainer` (`bench/stock_grpo.py`): same recipe, rows, seed and settings, back to back.

Three data shapes, from short prompts with one-word replies to long prompts with long replies:
SST-2 (the shipped `recipes/smollm2_grpo_sst2.yaml` as it is: ~60-token prompts, replies of at most
8 tokens), CoNLL-2003 (entity lines of at most 48 tokens, the `entity_f1` reward) and DialogSum
(prompts of ~250 tokens, summaries of at most 64, the `rougeL` reward), the last two from an
instruction mix (`scripts/instruction_mix.py`). For each shape and seed, both trainers run
`--steps` steps from the same seed; the bench prints seconds a step, sampled replies/s, MFU, the
mean reward over the steps, and the ratio of the two speeds. The two compute the same
log-probabilities, gradients and samples up to float rounding (tests/tasks/test_shared_prompts.py),
so their rewards differ only where rounding changes a sample.

    python bench/grpo_prompt_sharing.py [--mix-dir data/instruction_mix] [--shapes sst2 conll2003 dialogsum]
        [--steps 10] [--seeds 0]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from recipe_runs import TOOLKIT, train_recipe

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "smollm2_grpo_sst2.yaml"
PEER = (str(REPO / "bench" / "stock_grpo.py"),)

# What each shape changes in the shipped SST-2 recipe (its reward and how long a reply may be).
SHAPES: dict[str, dict[str, Any]] = {
    "sst2": {},
    "conll2003": {"grpo.rewards": "[{name: entity_f1}]", "grpo.max_completion_length": 48},
    "dialogsum": {"grpo.rewards": "[{name: rougeL}]", "grpo.max_completion_length": 64},
}


def shape_rows(mix_dir: Path, task: str, work: Path) -> dict[str, Any]:
    """The mix's training rows of one task and 16 of its validation rows (as many as the SST-2
    recipe's: the before-training evaluation is not timed, but it takes the bench's time)."""
    data = {}
    for split, limit in (("train", None), ("validation", 16)):
        lines = (mix_dir / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [line for line in lines if json.loads(line)["task"] == task][:limit]
        path = work / f"{task}-{split}.jsonl"
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        data[f"data.{split}"] = path
    return data


def run(entry: tuple[str, ...], overrides: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    metrics, _ = train_recipe(RECIPE, run_dir, overrides, entry=entry)
    train = metrics["train"]
    return {
        "seconds_per_step": train["runtime"] / train["steps"],
        "replies_per_second": train["samples_per_second"],
        "mfu": train["mfu"],
        "reward": metrics["rewards"]["reward"]["last"],  # one logging window: the mean over all steps
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mix-dir", type=Path, default=REPO / "data" / "instruction_mix")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="grpo-prompt-sharing-"))
    print(f"{'shape':10} {'seed':>4} {'trainer':10} {'s/step':>7} {'replies/s':>10} {'MFU':>6} {'reward':>7}")
    results = []
    for shape in args.shapes:
        data = shape_rows(args.mix_dir, shape, work) if shape != "sst2" else {}
        for seed in args.seeds:
            overrides = SHAPES[shape] | data
            overrides |= {"data.test": "null", "training.eval_strategy": "no", "training.seed": seed}
            overrides |= {"training.max_steps": args.steps, "training.logging_steps": args.steps}
            pair = {}
            for name, entry in (("TRL", PEER), ("toolkit", TOOLKIT)):
                measured = run(entry, overrides, work / f"{shape}-{seed}-{name}")
                print(
                    f"{shape:10} {seed:>4} {name:10} {measured['seconds_per_step']:>7.2f} "
                    f"{measured['replies_per_second']:>10.2f} {measured['mfu']:>6.1%} {measured['reward']:>7.3f}"
                )
                pair[name] = measured
            speedup = pair["TRL"]["seconds_per_step"] / pair["toolkit"]["seconds_per_step"]
            print(f"{shape:10} {seed:>4} {'speed-up':10} {speedup:>6.2f}x")
            results.append({"shape": shape, "seed": seed, **pair, "speedup": speedup})
    out = REPO / "bench" / "results" / "grpo_prompt_sharing.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
