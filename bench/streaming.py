"""Peak memory of a causal-LM run that streams its corpus (`data.streaming: true`) against the same run loading a
smaller corpus whole: the streamed run's memory should stay flat whatever the corpus size.

A JSON-lines corpus (2 GB by default) and a tiny GPT-2 (a byte-level BPE vocabulary trained here, as the tests
build theirs) are written under bench/results/streaming/ (git-ignored) and reused by later runs. Each run is its own
`finetune-kit train` process; its peak resident memory is the kernel's (ru_maxrss from os.wait4).

    python bench/streaming.py [--corpus-gb 2] [--baseline-mb 100] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import yaml
from recipe_runs import train_recipe

REPO = Path(__file__).resolve().parent.parent
FOLDER = REPO / "bench" / "results" / "streaming"
WORDS = [
    "the",
    "a",
    "film",
    "story",
    "plot",
    "cast",
    "acting",
    "scene",
    "quiet",
    "loud",
    "slow",
    "fast",
    "bright",
    "dark",
    "warm",
    "cold",
    "river",
    "city",
    "night",
    "morning",
    "garden",
    "window",
    "letter",
    "music",
    "voice",
    "travel",
    "memory",
    "winter",
    "summer",
    "ocean",
    "mountain",
    "road",
    "house",
    "friend",
    "stranger",
]
LINES_IN_POOL = 20_000  # distinct lines, repeated to the corpus size: writing 2 GB stays disk-bound


def write_corpus(path: Path, size_bytes: int, seed: int) -> int:
    """A JSON-lines file of about `size_bytes`, one ~1 KB document a row; rows written, or counted when it exists."""
    if path.is_file() and path.stat().st_size >= size_bytes:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    rng = random.Random(seed)
    pool = [json.dumps({"text": " ".join(rng.choices(WORDS, k=180))}) + "\n" for _ in range(LINES_IN_POOL)]
    written = rows = 0
    with path.open("w", encoding="utf-8") as handle:
        while written < size_bytes:
            chunk = "".join(pool[(rows + i) % LINES_IN_POOL] for i in range(LINES_IN_POOL))
            handle.write(chunk)
            written += len(chunk)
            rows += LINES_IN_POOL
    return rows


def build_tiny_gpt2(folder: Path) -> Path:
    """A 2-layer, 64-wide GPT-2 with a 1,000-token byte-level BPE vocabulary learned from the corpus's words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, set_seed

    if (folder / "config.json").is_file():
        return folder
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([" ".join(WORDS)] * 10, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    fast.save_pretrained(folder)
    eos = fast.eos_token_id
    config = GPT2Config(
        vocab_size=len(fast), n_embd=64, n_layer=2, n_head=2, n_positions=128, bos_token_id=eos, eos_token_id=eos
    )
    set_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def write_recipe(model: Path, validation: Path, steps: int) -> Path:
    recipe = {
        "task": "causal-lm",
        "model": {"checkpoint": str(model)},
        "data": {"train": "set per run", "validation": str(validation)},
        "training": {
            "max_steps": steps,
            "batch_size": 16,
            "max_length": 128,
            "learning_rate": 1e-3,
            "eval_strategy": "no",
            "precision": "fp32",
            "logging_steps": 50,
        },
        "generation": {"prompts": ["the"], "max_new_tokens": 1},
        "emissions": {"enabled": False},
    }
    path = FOLDER / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-gb", type=float, default=2.0, help="size of the streamed corpus")
    parser.add_argument("--baseline-mb", type=float, default=100.0, help="size of the corpus loaded whole")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    FOLDER.mkdir(parents=True, exist_ok=True)
    corpora = {
        "streamed": (FOLDER / "corpus.jsonl", int(args.corpus_gb * 1e9)),
        "loaded whole": (FOLDER / "baseline.jsonl", int(args.baseline_mb * 1e6)),
    }
    rows = {name: write_corpus(path, size, seed=0) for name, (path, size) in corpora.items()}
    validation = FOLDER / "validation.jsonl"
    rng = random.Random(1)
    validation.write_text("".join(json.dumps({"text": " ".join(rng.choices(WORDS, k=180))}) + "\n" for _ in range(200)))
    recipe = write_recipe(build_tiny_gpt2(FOLDER / "tiny-gpt2"), validation, args.steps)
    results = {}
    for name, (path, _) in corpora.items():
        overrides = {"data.train": path, "data.streaming": name == "streamed"}
        started = time.perf_counter()
        metrics, peak_mb = train_recipe(recipe, FOLDER / "runs" / name.replace(" ", "-"), overrides)
        results[name] = {
            "corpus_mb": round(path.stat().st_size / 1e6),
            "rows": rows[name],
            "steps": metrics["train"]["steps"],
            "peak_rss_mb": round(peak_mb),
            "wall_s": round(time.perf_counter() - started, 1),
            "perplexity": round(metrics["validation"]["perplexity"], 2),
        }
    print("| run | corpus | rows | steps | peak RSS | wall | validation perplexity |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['corpus_mb']:,} MB | {r['rows']:,} | {r['steps']} | {r['peak_rss_mb']:,} MB "
            f"| {r['wall_s']} s | {r['perplexity']} |"
        )
    ratio = results["streamed"]["peak_rss_mb"] / results["loaded whole"]["peak_rss_mb"]
    print(
        f"peak RSS: ru_maxrss of each `finetune-kit train` process (os.wait4); streamed / loaded whole: {ratio:.2f}x, "
        f"on a corpus {results['streamed']['corpus_mb'] / results['loaded whole']['corpus_mb']:.0f}x larger"
    )
    (FOLDER / "results.json").write_text(json.dumps({"steps": args.steps, **results, "ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
