"""Full fine-tuning vs LoRA for each task family, through the shipped recipe pairs.

For each family, a shipped full fine-tuning recipe and its `_lora` twin (a bare `peft: {method:
lora}`: the family's default targets, rank, alpha and learning rate) train on the same rows for the
same epochs and seed, and are scored on the same validation rows. The causal-LM and seq2seq pairs
start from a model this script pretrains first with the toolkit's own recipes (kept in --work-dir
and reused). Prints the metric, the gap in points (positive: LoRA is worse) and the trainable share.
Method: bench/README.md.

    python bench/lora_families.py --data-dir ../shared/data [--family ner causal-lm] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from recipe_runs import train_recipe

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
Overrides = dict[str, Any]


@dataclass(frozen=True)
class Family:
    """One full-vs-LoRA comparison: the recipe pair, the data, and how its metric reads."""

    name: str
    full: str  # recipes/<full>.yaml
    lora: str  # recipes/<lora>.yaml: the same recipe with a bare `peft: {method: lora}`
    metric: str  # key of metrics.json's validation section
    points: float  # metric x points = points (100 for a 0-1 score)
    lower_is_better: bool
    caps: Overrides  # rows, epochs: the same for both runs
    data: Callable[[Path, Path], Overrides]  # (data dir, work dir) -> --set overrides
    base: tuple[str, Callable[[Path], Overrides]] | None = None  # pretraining recipe run first
    base_caps: Overrides = field(default_factory=dict)


def sst2_data(data: Path, work: Path) -> Overrides:
    del work
    sst2 = data / "text_classification" / "sst2"
    return {"data.train": sst2 / "train.jsonl", "data.validation": sst2 / "validation.jsonl"}


def conll_data(data: Path, work: Path) -> Overrides:
    del work
    conll = data / "ner" / "conll2003"
    return {"data.train": conll / "train.jsonl", "data.validation": conll / "validation.jsonl", "data.test": "null"}


def shakespeare_data(data: Path) -> Overrides:
    text = data / "clm" / "tiny_shakespeare"
    return {"data.train": text / "train.txt", "data.validation": text / "validation.txt"}


def one_play_data(data: Path, work: Path) -> Overrides:
    """The Taming of the Shrew opens the validation split (never pretrained on): lines 1-2600 train,
    2601-3030 evaluate, as in recipes/shakespeare_finetune.yaml."""
    lines = (data / "clm" / "tiny_shakespeare" / "validation.txt").read_text(encoding="utf-8").splitlines(True)
    play = work / "one_play"
    play.mkdir(parents=True, exist_ok=True)
    (play / "train.txt").write_text("".join(lines[:2600]), encoding="utf-8")
    (play / "validation.txt").write_text("".join(lines[2600:3030]), encoding="utf-8")
    checkpoint = work / "shakespeare-pretrain" / "model"
    return {
        "data.train": play / "train.txt",
        "data.validation": play / "validation.txt",
        "model.checkpoint": checkpoint,
    }


def dialogsum_dialogues(data: Path) -> Overrides:
    dialogsum = data / "summarization" / "dialogsum"
    return {"data.train": dialogsum / "train.jsonl", "data.validation": dialogsum / "validation.jsonl"}


def dialogsum_data(data: Path, work: Path) -> Overrides:
    checkpoint = work / "dialogsum-denoise" / "model"
    return {**dialogsum_dialogues(data), "data.test": "null", "model.checkpoint": checkpoint}


FAMILIES = {
    family.name: family
    for family in (
        Family(
            "classification",
            "sst2_full",
            "sst2_lora",
            "accuracy",
            100,
            False,
            {"data.max_train_rows": 8000, "training.epochs": 2},
            sst2_data,
        ),
        Family(
            "ner",
            "conll2003_ner",
            "conll2003_ner_lora",
            "f1",
            100,
            False,
            {"data.max_train_rows": 3000, "data.max_eval_rows": 1000, "training.epochs": 2},
            conll_data,
        ),
        Family(
            "causal-lm",
            "shakespeare_finetune",
            "shakespeare_finetune_lora",
            "perplexity",
            1,
            True,
            {"training.epochs": 3},
            one_play_data,
            base=("shakespeare_pretrain", shakespeare_data),
        ),
        Family(
            "seq2seq",
            "dialogsum_summarize",
            "dialogsum_summarize_lora",
            "rougeL",
            1,
            False,
            {"data.max_train_rows": 4000, "data.max_eval_rows": 200, "training.epochs": 3},
            dialogsum_data,
            base=("dialogsum_denoise", dialogsum_dialogues),
            base_caps={"data.max_train_rows": 4000, "data.max_eval_rows": 200},
        ),
    )
}


def pretrain(family: Family, data: Path, work: Path) -> None:
    """The base model the family fine-tunes, trained once and kept in the work folder."""
    if family.base is None:
        return
    recipe, base_data = family.base
    run_dir = work / recipe.replace("_", "-")
    if not (run_dir / "metrics.json").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        train_recipe(RECIPES / f"{recipe}.yaml", run_dir, {**base_data(data), **family.base_caps})


def resolved_settings(run_dir: Path) -> dict[str, Any]:
    """The learning rate and adapter options the run used, from its saved (resolved) recipe."""
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    return {"learning_rate": recipe["training"]["learning_rate"], "peft": recipe["peft"]}


def compare(family: Family, data: Path, work: Path) -> dict[str, Any]:
    pretrain(family, data, work)
    overrides = {**family.data(data, work), **family.caps}
    results: dict[str, Any] = {"rows": family.caps.get("data.max_train_rows"), "epochs": family.caps["training.epochs"]}
    for run, recipe in (("full", family.full), ("lora", family.lora)):
        run_dir = work / f"{family.name}-{run}"
        shutil.rmtree(run_dir, ignore_errors=True)
        metrics, _ = train_recipe(RECIPES / f"{recipe}.yaml", run_dir, overrides)
        results[run] = {
            family.metric: metrics["validation"][family.metric],
            "trainable_percent": metrics["model"]["trainable_percent"],
            **resolved_settings(run_dir),
        }
    full, lora = results["full"][family.metric], results["lora"][family.metric]
    sign = -1 if family.lower_is_better else 1
    results["gap_points"] = round(sign * (full - lora) * family.points, 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="Folder of the shared data sets")
    parser.add_argument("--family", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "lora-families", help="Runs, kept")
    args = parser.parse_args()
    data, work = args.data_dir.resolve(), args.work_dir.resolve()
    results = {}
    print(f"{'family':15} {'metric':11} {'full':>8} {'lora':>8} {'gap':>6} {'lora %':>7} {'rows':>6} {'epochs':>6}")
    for name in args.family:
        family = FAMILIES[name]
        result = results[name] = compare(family, data, work)
        print(
            f"{name:15} {family.metric:11} {result['full'][family.metric]:8.4f} {result['lora'][family.metric]:8.4f}"
            f" {result['gap_points']:6.2f} {result['lora']['trainable_percent']:7.3f}"
            f" {result['rows'] or 'all':>6} {result['epochs']:>6}"
        )
    out = REPO / "bench" / "results" / "lora_families.json"
    out.parent.mkdir(exist_ok=True)
    earlier = json.loads(out.read_text()) if out.is_file() else {}  # families run on their own add up
    out.write_text(json.dumps(earlier | results, indent=2, default=str))


if __name__ == "__main__":
    main()
