"""Named-entity recognition (token classification): seqeval entity-level precision/recall/F1."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Sequence
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from transformers import (
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    EvalPrediction,
    PreTrainedTokenizerBase,
)

from finetune_kit.config.encoders import NerRecipe
from finetune_kit.data import require_columns
from finetune_kit.errors import DataError
from finetune_kit.models.head import ModelHead
from finetune_kit.tasks.base import LabelledHead, Task
from finetune_kit.tasks.common import CUT_COLUMN, IGNORE_INDEX, drop_cut_column, first_output
from finetune_kit.tasks.logits import PREDICT_BATCH, LogitsOf, PredictsFromLogits, softmax


def to_iob2(tags: list[str]) -> list[str]:
    """IOB1 → IOB2: an `I-X` that starts an entity becomes `B-X`. IOB2 tags pass unchanged."""
    converted = []
    for i, tag in enumerate(tags):
        previous = converted[i - 1] if i else "O"
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        converted.append(tag)
    return converted


def entity_spans(words: list[str], tags: list[str], scores: list[float]) -> list[dict[str, Any]]:
    """Group word tags into entities: text, type, start/end word index (end exclusive), mean score."""
    spans: list[dict[str, Any]] = []
    start, kind = None, None
    for i, tag in enumerate([*tags, "O"]):
        continues = kind is not None and tag == f"I-{kind}"
        if start is not None and not continues:
            spans.append(
                {
                    "text": " ".join(words[start:i]),
                    "type": kind,
                    "start": start,
                    "end": i,
                    "score": round(float(np.mean(scores[start:i])), 6),
                }
            )
            start, kind = None, None
        if tag[:2] in {"B-", "I-"} and not continues:
            start, kind = i, tag[2:]
    return spans


class NerTask(LabelledHead, PredictsFromLogits, Task):
    name: ClassVar[str] = "ner"
    pipeline_tag: ClassVar[str] = "token-classification"
    main_metric: ClassVar[str] = "f1"
    recipe: NerRecipe

    def __init__(self, recipe: NerRecipe) -> None:
        super().__init__(recipe)
        self.labels: list[str] = []
        self._id_names: list[str] | None = recipe.data.label_names

    def model_head(self) -> ModelHead:
        return ModelHead(AutoModelForTokenClassification, self.recipe.peft_task_type, self.label_config())

    # -- data ---------------------------------------------------------------------------------
    def inspect(self, data: DatasetDict) -> None:
        cfg = self.recipe.data
        require_columns(data, {"data.tokens_column": cfg.tokens_column, "data.tags_column": cfg.tags_column})
        feature = data["train"].features[cfg.tags_column]
        if self._id_names is None and isinstance(feature, Sequence) and isinstance(feature.feature, ClassLabel):
            self._id_names = feature.feature.names  # Hub datasets name their tag ids
        seen = {tag for _, tags in self._rows(data["train"], "data.train") for tag in tags}
        if self._id_names:
            self.labels = list(self._id_names)
        else:  # B- and I- for every entity type, so a type seen only in one-word entities still has I-
            kinds = sorted({t[2:] for t in seen if t[:2] in {"B-", "I-"}})
            plain = sorted(t for t in seen if t[:2] not in {"B-", "I-"})
            self.labels = plain + [f"{prefix}-{kind}" for kind in kinds for prefix in ("B", "I")]
        for split_name in ("validation", "test"):
            if split_name in data:
                self.inspect_eval(data[split_name], f"data.{split_name}")

    def inspect_eval(self, rows: Dataset, where: str) -> None:
        cfg = self.recipe.data
        require_columns(DatasetDict(eval=rows), {"tokens_column": cfg.tokens_column, "tags_column": cfg.tags_column})
        known = set(self.labels)
        for row, tags in self._rows(rows, where):
            unknown = next((t for t in tags if t not in known), None)
            if unknown is not None:
                raise DataError(
                    f"{where}: row {row} has tag '{unknown}', which the train data does not have; "
                    f"tags are: {', '.join(self.labels)}"
                )

    def _rows(self, rows: Dataset, where: str) -> list[tuple[int, list[str]]]:
        """(row number, IOB2 tag names) per sentence, after checking each sentence's shape."""
        cfg = self.recipe.data
        checked = []
        for row, (tokens, tags) in enumerate(zip(rows[cfg.tokens_column], rows[cfg.tags_column], strict=True), 1):
            if not tokens:
                raise DataError(f"{where}: row {row} is an empty sentence (no tokens); remove it")
            if not isinstance(tokens, list) or not isinstance(tags, list):
                raise DataError(f"{where}: row {row}: '{cfg.tokens_column}' and '{cfg.tags_column}' must be lists")
            if len(tokens) != len(tags):
                raise DataError(
                    f"{where}: row {row} has {len(tokens)} tokens but {len(tags)} tags; each token needs one tag"
                )
            checked.append((row, to_iob2([self._tag_name(t, where, row) for t in tags])))
        return checked

    def _tag_name(self, tag: Any, where: str, row: int) -> str:
        if isinstance(tag, str):
            return tag
        if self._id_names is None:
            raise DataError(f"{where}: row {row} has integer tags; name them with data.label_names")
        if not 0 <= tag < len(self._id_names):
            raise DataError(
                f"{where}: row {row} has tag id {tag}, outside data.label_names (0..{len(self._id_names) - 1})"
            )
        return self._id_names[tag]

    # -- model --------------------------------------------------------------------------------
    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        cfg = self.recipe.data
        label_ids = {name: i for i, name in enumerate(self.labels)}

        def encode(batch: dict[str, list]) -> dict[str, list]:
            encoded = tokenizer(
                batch[cfg.tokens_column],
                is_split_into_words=True,
                truncation=True,
                max_length=self.recipe.training.max_length,
            )
            labels, cut = [], []
            for i, tags in enumerate(batch[cfg.tags_column]):
                names = to_iob2([self._tag_name(t, "data", i) for t in tags])
                word_ids = encoded.word_ids(i)
                labels.append(self._align(word_ids, [label_ids[n] for n in names]))
                last_word = max((w for w in word_ids if w is not None), default=-1)
                cut.append(last_word < len(tags) - 1)
            encoded["labels"] = labels
            encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
            encoded[CUT_COLUMN] = cut
            return encoded

        limit = self.recipe.training.max_length
        return DatasetDict(
            {
                name: drop_cut_column(
                    split.map(encode, batched=True, remove_columns=split.column_names, desc=f"Tokenizing {name}"),
                    f"{name} sentences",
                    limit,
                )
                for name, split in data.items()
            }
        )

    def _align(self, word_ids: list[int | None], word_labels: list[int]) -> list[int]:
        """A word's label on its first sub-token; later sub-tokens ignored (or labelled I-X)."""
        aligned, previous = [], None
        for word in word_ids:
            if word is None:
                aligned.append(IGNORE_INDEX)
            elif word != previous:
                aligned.append(word_labels[word])
            elif self.recipe.data.label_all_subtokens:
                name = self.labels[word_labels[word]]
                inside = f"I-{name[2:]}" if name.startswith("B-") else name
                aligned.append(self.labels.index(inside) if inside in self.labels else word_labels[word])
            else:
                aligned.append(IGNORE_INDEX)
            previous = word
        return aligned

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> DataCollatorForTokenClassification:
        return DataCollatorForTokenClassification(tokenizer)

    # -- metrics and inference ----------------------------------------------------------------
    def compute_metrics(self, prediction: EvalPrediction, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        del tokenizer  # tags are ids: nothing to decode
        predicted_ids = np.argmax(first_output(prediction.predictions), axis=-1)
        truth, guess = [], []
        for predicted_row, label_row in zip(predicted_ids, prediction.label_ids, strict=True):
            keep = label_row != IGNORE_INDEX
            truth.append([self.labels[i] for i in label_row[keep]])
            guess.append([self.labels[i] for i in predicted_row[keep]])
        metrics = {
            "precision": float(precision_score(truth, guess)),
            "recall": float(recall_score(truth, guess)),
            "f1": float(f1_score(truth, guess)),
            "token_accuracy": float(accuracy_score(truth, guess)),
        }
        report = classification_report(truth, guess, output_dict=True, zero_division=0)
        for entity_type, scores in report.items():
            if not entity_type.endswith(" avg"):
                metrics[f"f1_{entity_type}"] = float(scores["f1-score"])
        return metrics

    def predict_from_logits(self, logits_of: LogitsOf, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        """Entity spans per sentence, from the label of each word's first sub-token."""
        column = self.recipe.data.tokens_column
        sentences = [value.split() if isinstance(value, str) else list(value) for value in rows[column]]
        results = []
        for start in range(0, len(sentences), PREDICT_BATCH):
            batch = sentences[start : start + PREDICT_BATCH]
            encoded = tokenizer(
                batch,
                is_split_into_words=True,
                truncation=True,
                max_length=self.recipe.training.max_length,
                padding=True,
                return_tensors="pt",
            )
            probabilities = softmax(logits_of(encoded))
            for i, words in enumerate(batch):
                tags, scores = ["O"] * len(words), [1.0] * len(words)
                seen = set()
                for position, word in enumerate(encoded.word_ids(i)):
                    if word is not None and word not in seen:
                        seen.add(word)
                        best = int(probabilities[i, position].argmax())
                        tags[word], scores[word] = self.labels[best], float(probabilities[i, position, best])
                results.append({"tokens": words, "entities": entity_spans(words, to_iob2(tags), scores)})
        return results

    def input_columns(self) -> list[str]:
        return [self.recipe.data.tokens_column]
