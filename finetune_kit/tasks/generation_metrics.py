"""Scores of generated answers against references, by the metric a held-out row names: the label
accuracy of a classifier, sacreBLEU of a translation, ROUGE-L of a summary, entity F1 of an
extraction. Scales follow the task families: accuracy and F1 in 0-1, BLEU and ROUGE in 0-100."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import sacrebleu
from rouge_score import rouge_scorer


def accuracy(predictions: list[str], references: list[str]) -> float:
    """Exact match of the answer, ignoring case, surrounding space and a final full stop."""
    hits = sum(_normalized(p) == _normalized(r) for p, r in zip(predictions, references, strict=True))
    return hits / max(len(references), 1)


def bleu(predictions: list[str], references: list[str]) -> float:
    return sacrebleu.corpus_bleu(predictions, [references]).score


def rouge_l(predictions: list[str], references: list[str]) -> float:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)]
    return 100 * sum(scores) / max(len(scores), 1)


def entity_f1(predictions: list[str], references: list[str]) -> float:
    """Micro F1 over (type, span) pairs, one `TYPE: span` per line (`none`: no entity)."""
    found = expected = correct = 0
    for prediction, reference in zip(predictions, references, strict=True):
        predicted, gold = entities(prediction), entities(reference)
        found, expected = found + sum(predicted.values()), expected + sum(gold.values())
        correct += sum((predicted & gold).values())
    if not correct:
        return 0.0
    precision, recall = correct / found, correct / expected
    return 2 * precision * recall / (precision + recall)


SCORERS: dict[str, Callable[[list[str], list[str]], float]] = {
    "accuracy": accuracy,
    "bleu": bleu,
    "rougeL": rouge_l,
    "entity_f1": entity_f1,
}


def _normalized(text: str) -> str:
    return text.strip().rstrip(".").strip().lower()


def entities(text: str) -> Counter[tuple[str, str]]:
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return Counter((kind.strip().upper(), span.strip()) for kind, span in pairs if span.strip())
