"""Build a retrieval set from DialogSum for `task: embedding`: summaries are the queries, dialogues the corpus.

Writes to ``--out`` (default ``data/dialogsum_retrieval``):

- ``train.jsonl``, ``validation.jsonl``, ``test.jsonl``: one pair per line, ``{"anchor": SUMMARY, "positive":
  DIALOGUE}``, from DialogSum's splits (the held-out ones give the loss beside the retrieval scores).
- ``validation_corpus.jsonl``, ``test_corpus.jsonl``: ``{"id": ID, "text": DIALOGUE}``, every dialogue of the
  split under its DialogSum id (``dev_0``, ``test_0``, ...).
- ``validation_queries.jsonl``, ``test_queries.jsonl``: ``{"id": ID, "text": SUMMARY, "relevant": [CORPUS_ID, ...]}``.
- ``SOURCE.md``: what the set is, the command that made it, counts, DialogSum's license (CC BY-NC-SA 4.0).

Rules:

- Where the folder has ``<split>_all_references.jsonl`` (DialogSum test: three human summaries per dialogue), each
  reference is a query of its own, id ``<dialogue id>_s<k>`` (k = 1, 2, 3); otherwise the split's ``summary`` is
  the dialogue's one query, ``<dialogue id>_s1``.
- DialogSum repeats some dialogues with only case, spacing or punctuation changed (test_33 and test_49, say). A
  query's ``relevant`` ids are every corpus dialogue with the same normalized text as the one it summarizes, and
  a summary text written for several dialogues (or twice for one) is one query relevant to all of them, so a
  correct answer never counts as a miss.
- Held-out rule (as in ``instruction_mix.py``): a train pair whose dialogue, normalized, also occurs in validation
  or test is dropped. Repeats within train are kept: they carry different summaries.
- ``--max-train-rows N`` keeps a seeded sample of N train pairs, in source order. The output depends only on the
  input files and the options.

    python scripts/retrieval_set.py --data-dir ../shared/data/summarization/dialogsum --out data/dialogsum_retrieval
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shlex
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

EVAL_SPLITS = ("validation", "test")


def read_jsonl(path: Path) -> Iterator[dict]:
    """Yield the records of a JSON Lines file."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, UTF-8 kept readable."""
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def normalized(text: str) -> str:
    """The text without case, spaces or punctuation: how DialogSum's repeated dialogues are recognised."""
    return re.sub(r"[\W_]+", "", text.casefold())


@dataclass
class EvalSet:
    """One split's corpus and queries, and how many summaries were merged into an existing query."""

    corpus: list[dict]
    queries: list[dict]
    merged: int


def pairs(records: list[dict]) -> list[dict]:
    """Training pairs: the summary is the anchor, its dialogue the positive."""
    return [{"anchor": r["summary"].strip(), "positive": r["dialogue"].strip()} for r in records]


def references(data_dir: Path, split: str, records: list[dict]) -> dict[str, list[str]]:
    """Each dialogue's summaries: all references where the folder has them, else the split's one summary."""
    path = data_dir / f"{split}_all_references.jsonl"
    if not path.exists():
        return {r["id"]: [r["summary"]] for r in records}
    found = {r["id"]: list(r["summaries"]) for r in read_jsonl(path)}
    missing = [r["id"] for r in records if r["id"] not in found]
    if missing or len(found) != len(records):
        raise SystemExit(f"{path}: its ids do not match {split}.jsonl (missing e.g. {missing[:3]})")
    return found


def eval_set(data_dir: Path, split: str, records: list[dict]) -> EvalSet:
    """The split's dialogues as corpus and their summaries as queries (see the module's rules)."""
    corpus = [{"id": r["id"], "text": r["dialogue"].strip()} for r in records]
    same_text: dict[str, list[str]] = {}
    for doc in corpus:
        same_text.setdefault(normalized(doc["text"]), []).append(doc["id"])
    order = {doc["id"]: i for i, doc in enumerate(corpus)}
    summaries = references(data_dir, split, records)
    by_text: dict[str, dict] = {}
    merged = 0
    for record in records:
        relevant = same_text[normalized(record["dialogue"])]
        for k, summary in enumerate(summaries[record["id"]], start=1):
            text = summary.strip()
            if text in by_text:
                merged += 1
                query = by_text[text]
                query["relevant"] = sorted(set(query["relevant"]) | set(relevant), key=order.__getitem__)
            else:
                by_text[text] = {"id": f"{record['id']}_s{k}", "text": text, "relevant": list(relevant)}
    return EvalSet(corpus, list(by_text.values()), merged)


def word_stats(texts: list[str]) -> str:
    """Mean, median, 90th/99th percentile (nearest rank) and maximum length in whitespace-separated words."""
    lengths = sorted(len(text.split()) for text in texts)
    if not lengths:
        return "no rows"

    def rank(q: float) -> int:
        return lengths[round(q * (len(lengths) - 1))]

    return (
        f"mean {statistics.fmean(lengths):.0f}, median {statistics.median(lengths):.0f}, "
        f"p90 {rank(0.9)}, p99 {rank(0.99)}, max {lengths[-1]}"
    )


def source_md(command: str, counts: dict[str, int], sets: dict[str, EvalSet], train: list[dict]) -> str:
    """The output folder's SOURCE.md: origin, construction, counts, license."""
    multi = {split: sum(len(q["relevant"]) > 1 for q in s.queries) for split, s in sets.items()}
    eval_lines = "\n".join(
        f"| `{split}` | {len(s.corpus):,} | {len(s.queries):,} | {multi[split]} | {s.merged} |"
        for split, s in sets.items()
    )
    return f"""# DialogSum retrieval set (summary → dialogue), for `task: embedding`

- **What**: a retrieval set made from DialogSum (Chen et al., 2021): each human-written summary is a query and the
  dialogues are the corpus. `train.jsonl` and `validation.jsonl` hold training pairs
  `{{"anchor": SUMMARY, "positive": DIALOGUE}}` from DialogSum's train and validation splits.
  `<split>_corpus.jsonl` holds `{{"id", "text"}}` (every dialogue of the split, under its DialogSum id) and
  `<split>_queries.jsonl` holds `{{"id", "text", "relevant": [corpus ids]}}`, for validation and test.
- **Queries**: where DialogSum has several reference summaries per dialogue (test: three, from
  `test_all_references.jsonl`), each reference is a query of its own, id `<dialogue id>_s<k>`; validation has one
  summary per dialogue (`_s1`). A query's `relevant` ids are the dialogue it summarizes plus any dialogue of the same
  split that repeats it up to case, spacing and punctuation (DialogSum has a few such repeats, e.g. `test_33` and
  `test_49`); an identical summary text written for several dialogues, or twice for one, is a single query relevant
  to all of them ("merged" below).
- **Held-out rule**: train pairs whose dialogue (up to case, spacing and punctuation) also occurs in DialogSum's
  validation or test split are dropped ({counts["dropped"]} pairs). Train keeps its own repeated dialogues (they
  carry different summaries) and a few repeated summaries: with in-batch negatives such a repeat in one batch is
  a false negative; a duplicate-free batch sampler avoids it.
- **Made with** (from the repository root):
  ```
  {command}
  ```

## Counts

| file | rows |
|---|---|
| `train.jsonl` | {len(train):,} (of {counts["train_available"]:,} DialogSum train pairs after the held-out rule) |
| `validation.jsonl` | {counts["validation"]:,} |
| `test.jsonl` | {counts["test"]:,} |

| split | corpus | queries | queries with >1 relevant | summaries merged into another query |
|---|---|---|---|---|
{eval_lines}

Dialogue length in words (train positives): {word_stats([p["positive"] for p in train])}.
Summary length in words (train anchors): {word_stats([p["anchor"] for p in train])}.
Dialogues are long for a 128- or 256-token encoder: at about 1.6 word pieces per word (MiniLM's tokenizer), a
256-token limit cuts every dialogue of more than about 160 words.

## Source and license

DialogSum, GitHub `cylnlp/dialogsum` (see the shared data folder's own SOURCE.md for the exact files and commits).
License as stated by the authors: **CC BY-NC-SA 4.0** ("The copyright of dialogue data in DialogSum dataset belongs
to users who created them"): **non-commercial** use only, and this derived set is shared under the same license.
Cite: Chen et al., *DialogSum: A Real-Life Scenario Dialogue Summarization Dataset*, Findings of ACL 2021.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="DialogSum folder (train/validation/test.jsonl, SOURCE.md)"
    )
    parser.add_argument("--out", type=Path, default=Path("data/dialogsum_retrieval"), help="output folder")
    parser.add_argument("--max-train-rows", type=int, default=None, help="keep a seeded sample of N train pairs")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Read the three splits, write the pairs, the evaluation corpora and queries and SOURCE.md; print the counts."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    splits = {split: list(read_jsonl(args.data_dir / f"{split}.jsonl")) for split in ("train", *EVAL_SPLITS)}
    held_out = {normalized(r["dialogue"]) for split in EVAL_SPLITS for r in splits[split]}
    pool = [r for r in splits["train"] if normalized(r["dialogue"]) not in held_out]
    train = pairs(pool)
    if args.max_train_rows is not None:
        if args.max_train_rows > len(train):
            raise SystemExit(f"--max-train-rows {args.max_train_rows}: only {len(train)} train pairs are available")
        keep = sorted(random.Random(args.seed).sample(range(len(train)), args.max_train_rows))
        train = [train[i] for i in keep]
    validation = pairs(splits["validation"])
    test = pairs(splits["test"])
    sets = {split: eval_set(args.data_dir, split, splits[split]) for split in EVAL_SPLITS}

    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "train.jsonl", train)
    write_jsonl(args.out / "validation.jsonl", validation)
    write_jsonl(args.out / "test.jsonl", test)
    for split, s in sets.items():
        write_jsonl(args.out / f"{split}_corpus.jsonl", s.corpus)
        write_jsonl(args.out / f"{split}_queries.jsonl", s.queries)
    counts = {
        "dropped": len(splits["train"]) - len(pool),
        "train_available": len(pool),
        "validation": len(validation),
        "test": len(test),
    }
    command = shlex.join(["python", "scripts/retrieval_set.py", *argv])
    (args.out / "SOURCE.md").write_text(source_md(command, counts, sets, train), encoding="utf-8")

    print(f"train.jsonl: {len(train)} pairs ({counts['dropped']} dropped: dialogue also in validation/test)")
    print(f"validation.jsonl: {len(validation)} pairs, test.jsonl: {len(test)} pairs")
    for split, s in sets.items():
        print(f"{split}: corpus {len(s.corpus)}, queries {len(s.queries)} ({s.merged} summaries merged)")


if __name__ == "__main__":
    main()
