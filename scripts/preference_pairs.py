"""Self-play preference pairs (as in SPIN) from the instruction mix, for `task: preference`.

For each prompt, `chosen` is the mix's reference answer and `rejected` is what a model (an SFT run,
or any chat checkpoint) answers itself, greedily; prompts it already answers exactly as the
reference are skipped (no preference to learn). Training pairs come from the mix's train split and
held-out pairs from its validation split only, so no held-out prompt is ever trained on.
`provenance.json` records which model produced the rejections, with which settings.

    python scripts/preference_pairs.py --mix-dir data/instruction_mix --model runs/smollm2-sft-lora \
        --out data/preference_pairs [--train-rows 1000] [--validation-rows 200]
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timezone
from pathlib import Path

from finetune_kit.chat import load_chat_model
from finetune_kit.tasks.generation import reply_texts


def sample(path: Path, rows: int, seed: int) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    random.Random(seed).shuffle(lines)
    return [json.loads(line) for line in lines[:rows]]


def pairs(rows: list[dict], replies: list[str], system: str | None) -> list[dict]:
    """One pair per row whose reply differs from the reference (ignoring case and outer space)."""
    kept = []
    for row, reply in zip(rows, replies, strict=True):
        reference = row["messages"][-1]["content"]
        if reply.strip().lower() == reference.strip().lower():
            continue
        prompt = [{"role": "system", "content": system}] * bool(system) + row["messages"][:-1]
        kept.append({"prompt": prompt, "chosen": reference, "rejected": reply, "task": row.get("task")})
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mix-dir", type=Path, required=True, help="Output of scripts/instruction_mix.py")
    parser.add_argument("--model", required=True, help="The model whose own answers are rejected: a run or checkpoint")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-rows", type=int, default=1000, help="Prompts read from train.jsonl")
    parser.add_argument("--validation-rows", type=int, default=200, help="Prompts read from validation.jsonl")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    chat = load_chat_model(args.model)
    settings = chat.settings.model_copy(update={"max_new_tokens": args.max_new_tokens, "temperature": 0.0})
    args.out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, rows in (("train", args.train_rows), ("validation", args.validation_rows)):
        prompts = sample(args.mix_dir / f"{split}.jsonl", rows, args.seed)
        system = [{"role": "system", "content": chat.system}] * bool(chat.system)
        replies = reply_texts(
            chat.model, chat.tokenizer, [system + r["messages"][:-1] for r in prompts], settings, args.batch_size
        )
        kept = pairs(prompts, replies, chat.system)
        (args.out / f"{split}.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in kept))
        counts[split] = {"prompts": len(prompts), "pairs": len(kept)}
        print(f"{split}: {len(kept)} pairs from {len(prompts)} prompts")
    provenance = {
        "rejections_by": args.model,
        "generation": settings.model_dump(),
        "mix": str(args.mix_dir),
        "seed": args.seed,
        "counts": counts,
        "made": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (args.out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")


if __name__ == "__main__":
    main()
