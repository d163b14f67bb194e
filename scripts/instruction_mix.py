"""Build a chat instruction-tuning mix from four shared datasets.

Writes ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` to ``--out``, one row per example::

    {"messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": ANSWER}],
     "task": TASK, "metric": METRIC}

Tasks (``task``/``metric``):

- ``sst2``/``accuracy``: SST-2 sentiment, answer ``positive`` or ``negative``.
- ``multi30k``/``bleu``: Multi30k English→German, answer the German sentence.
- ``dialogsum``/``rougeL``: DialogSum, answer the reference summary (for test, the first of the three references).
- ``conll2003``/``entity_f1``: CoNLL-2003 NER, answer one ``TYPE: span`` line per entity in sentence order
  (TYPE in PER, ORG, LOC, MISC; tokens joined with single spaces), or ``none``.

Each row's prompt is one of several wordings per task, each stating the expected answer form.

Held-out rule: ``test.jsonl`` comes only from each set's own test split; ``validation.jsonl`` and
``train.jsonl`` come only from the train splits (validation is a seeded slice of train, disjoint from the
train rows). GLUE SST-2's test split has no labels, so the SST-2 validation split (the GLUE dev set) is its
held-out test. The other sets' validation splits are not used. A train-split row whose input text also occurs
in the held-out split is dropped (CoNLL-2003 repeats boilerplate lines such as ``W L PCT GB`` across splits),
and train-split duplicates are kept once, so no held-out input reaches train/validation and validation
inputs never repeat in train.

Sampling is seeded per task (changing one task's size leaves the others' rows unchanged); train is shuffled
across tasks, validation and test are grouped by task. ``--tasks`` keeps some tasks only: ``--tasks sst2``
is the short single-task chat data that ``bench/sft_throughput.py`` measures besides the mix.

The bundled sample ``recipes/data/instruction_mix/`` was made with::

    python scripts/instruction_mix.py --data-dir ../shared/data --out recipes/data/instruction_mix \\
        --train-rows sst2=120 multi30k=120 dialogsum=60 conll2003=120 \\
        --validation-per-task 10 --test-per-task 10 --max-words 120 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

Example = tuple[str, str]  # (input text, answer)

PROMPTS: dict[str, list[str]] = {
    "sst2": [
        "Classify the sentiment of this movie review sentence. Answer with one word: positive or negative.\n\n{text}",
        "Is the sentiment of the following text positive or negative? Reply with exactly one word.\n\n{text}",
        "What sentiment does this sentence express? Answer positive or negative, nothing else.\n\nSentence: {text}",
        "Does this review snippet sound positive or negative? Answer with one word: positive or negative.\n\n"
        "Review: {text}",
    ],
    "multi30k": [
        "Translate the following English sentence into German. Reply with the German translation only.\n\n{text}",
        "Translate to German. Answer with only the German sentence.\n\nEnglish: {text}",
        "What is the German translation of this sentence? Give only the translation.\n\n{text}",
        "Render this English image caption in German. Output just the German sentence.\n\n{text}",
    ],
    "dialogsum": [
        "Summarize the following dialogue in one to three sentences. Answer with the summary only.\n\n{text}",
        "Write a short third-person summary of this conversation (a sentence or two). Reply with the summary only."
        "\n\n{text}",
        "Read the dialogue and give a brief summary of one to three sentences.\n\nDialogue:\n{text}",
        "What happens in this conversation? Answer with a concise summary, one to three sentences.\n\n{text}",
    ],
    "conll2003": [
        "List the named entities as `TYPE: span` lines (PER, ORG, LOC, MISC) in sentence order, or `none`.\n\n{text}",
        "Find all person (PER), organization (ORG), location (LOC) and miscellaneous (MISC) names in the text. "
        "Write one `TYPE: span` line per entity in order of appearance, or `none` if there is none.\n\nText: {text}",
        "Extract the named entities. Answer with one line per entity formatted `TYPE: span`, where TYPE is PER, ORG, "
        "LOC or MISC; answer `none` if the sentence has no entities.\n\n{text}",
        "Tag the named entities in the sentence below. Output one `TYPE: span` line each (TYPE = PER, ORG, LOC, "
        "MISC), or the single word `none`.\n\nSentence: {text}",
    ],
}

DEFAULT_TRAIN_ROWS = {"sst2": 1500, "multi30k": 1500, "dialogsum": 500, "conll2003": 1000}


def read_jsonl(path: Path) -> Iterator[dict]:
    """Yield the records of a JSON Lines file."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def sst2_example(record: dict) -> Example:
    """Map label 0/1 to the one-word answer; GLUE sentences carry a trailing space."""
    return record["sentence"].strip(), ("negative", "positive")[record["label"]]


def multi30k_example(record: dict) -> Example:
    """English source, German reference."""
    pair = record["translation"]
    return pair["en"].strip(), pair["de"].strip()


def dialogsum_example(record: dict) -> Example:
    """Dialogue and its summary; in the shared test split ``summary`` is already the first reference."""
    return record["dialogue"].strip(), record["summary"].strip()


def conll_entities(tokens: list[str], tags: list[str]) -> list[str]:
    """Turn IOB2 tags into ``TYPE: span`` lines; an ``I-X`` after another type starts a new entity."""
    spans: list[tuple[str, list[str]]] = []
    previous = "O"
    for token, tag in zip(tokens, tags, strict=True):
        kind = tag[2:]
        if tag.startswith("B-") or (tag.startswith("I-") and previous[2:] != kind):
            spans.append((kind, [token]))
        elif tag.startswith("I-"):
            spans[-1][1].append(token)
        previous = tag
    return [f"{kind}: {' '.join(words)}" for kind, words in spans]


def conll_example(record: dict) -> Example:
    """Sentence as space-joined tokens; ``none`` when it has no entity."""
    entities = conll_entities(record["tokens"], record["ner_tags"])
    return " ".join(record["tokens"]), "\n".join(entities) or "none"


@dataclass(frozen=True)
class Task:
    """Where a task's data lives and how a record becomes an example."""

    name: str
    metric: str
    folder: str
    held_out_split: str
    to_example: Callable[[dict], Example]


TASKS = [
    # GLUE SST-2 test has no labels: the validation split (GLUE dev) is the held-out test.
    Task("sst2", "accuracy", "text_classification/sst2", "validation", sst2_example),
    Task("multi30k", "bleu", "translation/multi30k_en_de", "test", multi30k_example),
    Task("dialogsum", "rougeL", "summarization/dialogsum", "test", dialogsum_example),
    Task("conll2003", "entity_f1", "ner/conll2003", "test", conll_example),
]


def load_examples(path: Path, to_example: Callable[[dict], Example], max_words: int | None) -> list[Example]:
    """Read a split, keeping only inputs of at most ``max_words`` words so the short sample stays CPU-friendly."""
    examples = [to_example(record) for record in read_jsonl(path)]
    return [ex for ex in examples if max_words is None or len(ex[0].split()) <= max_words]


def unique_unseen(examples: list[Example], held_out: list[Example]) -> list[Example]:
    """Drop train inputs that occur in the held-out split, and repeats, so nothing held out leaks into training."""
    seen = {text for text, _ in held_out}
    kept = []
    for example in examples:
        if example[0] not in seen:
            seen.add(example[0])
            kept.append(example)
    return kept


def take(examples: list[Example], n: int, rng: random.Random, what: str) -> list[Example]:
    """Seeded sample in source order; fail loudly rather than silently write fewer rows than asked."""
    if n > len(examples):
        raise SystemExit(f"{what}: asked for {n} rows but only {len(examples)} are available")
    return [examples[i] for i in sorted(rng.sample(range(len(examples)), n))]


def to_row(task: Task, example: Example, rng: random.Random) -> dict:
    """Wrap an example in a randomly worded user prompt and the assistant answer."""
    text, answer = example
    prompt = rng.choice(PROMPTS[task.name]).format(text=text)
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "task": task.name, "metric": task.metric}


def build_task(task: Task, args: argparse.Namespace) -> dict[str, list[dict]]:
    """Sample one task's train/validation/test rows from its own splits (test only from the held-out split)."""
    rng = random.Random(f"{args.seed}:{task.name}")
    folder = args.data_dir / task.folder
    held_out = load_examples(folder / f"{task.held_out_split}.jsonl", task.to_example, args.max_words)
    pool = unique_unseen(load_examples(folder / "train.jsonl", task.to_example, args.max_words), held_out)
    pool = [example for example in pool if len(example[0].split()) >= args.min_train_words]
    n_train, n_validation = args.train_rows[task.name], args.validation_per_task
    picked = take(pool, n_train + n_validation, rng, f"{task.name} train split")
    rng.shuffle(picked)
    splits = {
        "train": picked[n_validation:],
        "validation": picked[:n_validation],
        "test": take(held_out, args.test_per_task, rng, f"{task.name} {task.held_out_split} split"),
    }
    return {split: [to_row(task, ex, rng) for ex in examples] for split, examples in splits.items()}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, UTF-8 kept readable (German umlauts)."""
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def parse_train_rows(values: list[str]) -> dict[str, int]:
    """Parse ``task=N`` pairs over the defaults, so one task's size can be changed alone."""
    rows = dict(DEFAULT_TRAIN_ROWS)
    for value in values:
        name, _, count = value.partition("=")
        if name not in rows or not count.isdigit():
            raise SystemExit(f"--train-rows expects task=N with task in {sorted(rows)}, got {value!r}")
        rows[name] = int(count)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; sizes are per task."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="root of the shared datasets")
    parser.add_argument("--out", type=Path, required=True, help="folder for train/validation/test.jsonl")
    defaults = " ".join(f"{k}={v}" for k, v in DEFAULT_TRAIN_ROWS.items())
    parser.add_argument(
        "--train-rows", nargs="+", default=[], metavar="TASK=N", help=f"train rows per task (default: {defaults})"
    )
    parser.add_argument("--validation-per-task", type=int, default=50, help="validation rows per task (from train)")
    parser.add_argument("--test-per-task", type=int, default=200, help="test rows per task (from held-out split)")
    parser.add_argument(
        "--tasks", nargs="+", default=[t.name for t in TASKS], choices=[t.name for t in TASKS], help="tasks to include"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-words", type=int, default=None, help="keep only inputs of at most N words")
    parser.add_argument(
        "--min-train-words",
        type=int,
        default=0,
        help="train/validation inputs of at least N words (SST-2's train split holds every phrase of its parse "
        "trees, down to single words; its held-out split holds whole sentences)",
    )
    args = parser.parse_args(argv)
    args.train_rows = parse_train_rows(args.train_rows)
    return args


def main(argv: list[str] | None = None) -> None:
    """Build every task, shuffle train across tasks, write the three files and print their per-task counts."""
    args = parse_args(argv)
    files: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    chosen = [task for task in TASKS if task.name in args.tasks]
    for task in chosen:
        for split, rows in build_task(task, args).items():
            files[split].extend(rows)
    random.Random(args.seed).shuffle(files["train"])
    args.out.mkdir(parents=True, exist_ok=True)
    for split, rows in files.items():
        write_jsonl(args.out / f"{split}.jsonl", rows)
        counts = Counter(row["task"] for row in rows)
        print(f"{split}.jsonl: {len(rows)} rows ({', '.join(f'{t.name}={counts[t.name]}' for t in chosen)})")


if __name__ == "__main__":
    main()
