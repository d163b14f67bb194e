"""Held-out generation: the continuous batching that scoring now decodes with (`reply_texts`, the
server's loop) against `model.generate` in left-padded static batches (how it decoded before), on
the same prompts, model, precision and batch size, alternately in one process.

Why: a run answers its held-out prompts before and after training, and a static batch runs until
its longest reply ends, so the one-word answers beside a summary wait for it. The continuous loop
gives a finished reply's slot to the next prompt at the next step, prefills the prompts' shared
beginning (chat template, system prompt) once, and computes the logits of the last prompt position
only. Prints prompts/s and generated tokens/s of each pass, the ratio of the medians, each method's
scores per group, and how many replies are the same text (greedy: in fp32 all should be; in bf16 a
near tie can tip with what else is in the batch).

    python bench/held_out_generation.py --test data/instruction_mix/test.jsonl
    python bench/held_out_generation.py --test data/sst2_dev872/test.jsonl --model runs/smollm2-sft-lora
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from finetune_kit.chat import load_chat_model
from finetune_kit.config.generation import HeldOutGeneration
from finetune_kit.tasks.chat_template import prompt_text, stop_token_ids
from finetune_kit.tasks.decoding import BatchDecoder, Reply
from finetune_kit.tasks.generation import _generated_in_batches, generating
from finetune_kit.tasks.generation_metrics import SCORERS
from finetune_kit.training.precision import autocast, resolve_precision

CHECKPOINT = "HuggingFaceTB/SmolLM2-135M-Instruct"
SYSTEM = "You are a helpful assistant. Answer in the form the user asks for."  # recipes/smollm2_sft_lora.yaml's
Decode = Callable[[list[list[int]]], list[list[int]]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", type=Path, required=True, help="held-out conversations (JSONL, messages + metric)")
    parser.add_argument(
        "--model", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="a chat run folder or checkpoint"
    )
    parser.add_argument("--rows", type=int, default=None, help="the first N rows (default: all)")
    parser.add_argument("--batch-size", type=int, default=16, help="replies decoded together (the recipe's 16)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="the SFT recipe's 96")
    parser.add_argument("--precision", choices=["auto", "fp32"], default="auto", help="auto: bf16 where fast")
    parser.add_argument("--repeats", type=int, default=1, help="passes of each method, alternating")
    return parser.parse_args()


def held_out(
    path: Path, rows: int | None, system: str | None, tokenizer: PreTrainedTokenizerBase
) -> tuple[list[list[int]], list[str], list[str], list[str]]:
    """Prompt ids (the conversation before its last reply), references, metrics and groups, sorted as
    `reply_texts` sorts them: by group, then prompt length."""
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:rows]]
    head = [{"role": "system", "content": system}] if system else []
    table = []
    for row in lines:
        text = prompt_text(tokenizer, head + row["messages"][:-1])
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        table.append((row.get("task", ""), ids, row["messages"][-1]["content"], row["metric"]))
    table.sort(key=lambda item: (item[0], len(item[1])))
    groups, ids, references, metrics = (list(column) for column in zip(*table, strict=True))
    return ids, references, metrics, groups


def until_stop(tokens: list[int], stops: list[int]) -> list[int]:
    """A reply's tokens through its first stop token (`generate` pads a finished row to the batch's end)."""
    ends = [i for i, token in enumerate(tokens) if token in stops]
    return tokens[: ends[0] + 1] if ends else tokens


def main() -> None:
    args = parse_args()
    chat = load_chat_model(args.model)
    model, tokenizer = chat.model, chat.tokenizer
    ids, references, metrics, groups = held_out(args.test, args.rows, chat.system or SYSTEM, tokenizer)
    settings = HeldOutGeneration(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    stops, pad = stop_token_ids(tokenizer), tokenizer.pad_token_id
    device = next(model.parameters()).device
    precision = resolve_precision(args.precision)

    def continuous(batch: list[list[int]]) -> list[list[int]]:
        replies = [Reply(prompt, settings, stops) for prompt in batch]
        BatchDecoder(model, args.batch_size).decode(replies)
        return [reply.tokens for reply in replies]

    def static(batch: list[list[int]]) -> list[list[int]]:
        generated = _generated_in_batches(model, batch, settings, args.batch_size, stops, pad)
        return [until_stop(tokens, stops) for tokens in generated]

    methods: dict[str, Decode] = {"generate, static batches (before)": static, "continuous batching (now)": continuous}
    seconds: dict[str, list[float]] = defaultdict(list)
    outputs: dict[str, list[list[int]]] = {}
    print(
        f"{len(ids)} prompts, {precision}, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, {args.model}"
    )
    print(f"{'method':36} {'pass':>4} {'prompts/s':>10} {'tokens/s':>9} {'seconds':>8}")
    with generating(model, settings.seed), autocast(precision, device):
        for method in methods.values():
            method(ids[: args.batch_size])  # warm-up: first-call allocations and thread pools
        for repeat in range(args.repeats):
            for name, method in methods.items():
                started = time.perf_counter()
                outputs[name] = method(ids)
                elapsed = time.perf_counter() - started
                seconds[name].append(elapsed)
                tokens = sum(len(reply) for reply in outputs[name])
                print(f"{name:36} {repeat + 1:>4} {len(ids) / elapsed:>10.2f} {tokens / elapsed:>9.1f} {elapsed:>8.1f}")
    before, now = (statistics.median(seconds[name]) for name in methods)
    print(f"speed-up of the medians: {before / now:.2f}x")
    texts = {
        name: [tokenizer.decode(t, skip_special_tokens=True).strip() for t in out] for name, out in outputs.items()
    }
    for name, replies in texts.items():
        scored: dict[tuple[str, str], list[int]] = defaultdict(list)
        for index, key in enumerate(zip(groups, metrics, strict=True)):
            scored[key].append(index)
        line = ", ".join(
            f"{group}_{metric} {SCORERS[metric]([replies[i] for i in rows], [references[i] for i in rows]):.3f}"
            for (group, metric), rows in sorted(scored.items())
        )
        print(f"{name}: {line}")
    same = sum(a == b for a, b in zip(*texts.values(), strict=True))
    print(f"same reply text: {same} of {len(ids)}")


if __name__ == "__main__":
    main()
