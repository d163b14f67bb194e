"""Text classification (single sentences or pairs): accuracy, macro-F1 and per-class F1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from datasets import Dataset, DatasetDict, IterableDataset
from sklearn.metrics import accuracy_score, f1_score
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedTokenizerBase,
)

from finetune_kit.config.encoders import ClassificationRecipe
from finetune_kit.data import Stream, require_columns
from finetune_kit.errors import DataError
from finetune_kit.models.head import ModelHead
from finetune_kit.tasks.base import StreamedTraining, Task
from finetune_kit.tasks.class_labels import ClassLabels
from finetune_kit.tasks.common import first_output
from finetune_kit.tasks.logits import PREDICT_BATCH, LogitsOf, PredictsFromLogits, softmax


class ClassificationTask(ClassLabels, PredictsFromLogits, StreamedTraining, Task):
    name: ClassVar[str] = "classification"
    pipeline_tag: ClassVar[str] = "text-classification"
    main_metric: ClassVar[str] = "accuracy"
    recipe: ClassificationRecipe

    def __init__(self, recipe: ClassificationRecipe) -> None:
        super().__init__(recipe)
        self.labels: list[str] = []

    def model_head(self) -> ModelHead:
        return ModelHead(AutoModelForSequenceClassification, self.recipe.peft_task_type, self.label_config())

    # -- data ---------------------------------------------------------------------------------
    def inspect(self, data: DatasetDict) -> None:
        cfg = self.recipe.data
        require_columns(
            data,
            {
                "data.text_column": cfg.text_column,
                "data.text_pair_column": cfg.text_pair_column,
                "data.label_column": cfg.label_column,
            },
        )
        for split_name, split in data.items():
            self._check_texts(split, f"data.{split_name}")
        self.learn_labels(data["train"], data["validation"] if cfg.streaming else None)
        for split_name in ("validation", "test"):
            if split_name in data:
                self.check_labels(data[split_name], f"data.{split_name}")

    def _check_texts(self, rows: Dataset, where: str) -> None:
        for column in self.input_columns():
            for row, text in enumerate(rows[column], start=1):
                _check_text(text, column, where, row)

    def check_row(self, row: dict[str, Any], where: str, number: int) -> None:
        for column in self.input_columns():
            _check_text(row[column], column, where, number)
        value = row[self.recipe.data.label_column]
        if self.label_name(value, where, number) not in self.labels:
            raise DataError(
                f"{where}: row {number} has label {value!r}, not one of the labels learned before training "
                f"({', '.join(self.labels)}); name every label in data.label_names"
            )

    # -- model --------------------------------------------------------------------------------
    def inspect_eval(self, rows: Dataset, where: str) -> None:
        cfg = self.recipe.data
        require_columns(
            DatasetDict(eval=rows),
            {
                "text_column": cfg.text_column,
                "text_pair_column": cfg.text_pair_column,
                "label_column": cfg.label_column,
            },
        )
        self._check_texts(rows, where)
        self.check_labels(rows, where)

    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        encode = self._encoder(tokenizer)
        return DatasetDict(
            {
                name: split.map(encode, batched=True, remove_columns=split.column_names, desc=f"Tokenizing {name}")
                for name, split in data.items()
            }
        )

    def stream_features(self, stream: Stream, tokenizer: PreTrainedTokenizerBase) -> IterableDataset:
        rows = stream.checked(self.check_row)
        return rows.map(self._encoder(tokenizer), batched=True, remove_columns=list(stream.columns))

    def _encoder(self, tokenizer: PreTrainedTokenizerBase) -> Callable[[dict[str, list]], dict[str, list]]:
        cfg = self.recipe.data

        def encode(batch: dict[str, list]) -> dict[str, list]:
            pairs = batch[cfg.text_pair_column] if cfg.text_pair_column else None
            encoded = tokenizer(
                batch[cfg.text_column], pairs, truncation=True, max_length=self.recipe.training.max_length
            )
            encoded["labels"] = self.label_ids(batch[cfg.label_column])
            encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
            return encoded

        return encode

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> DataCollatorWithPadding:
        return DataCollatorWithPadding(tokenizer)

    # -- metrics and inference ----------------------------------------------------------------
    def compute_metrics(self, prediction: EvalPrediction, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        del tokenizer  # labels are ids: nothing to decode
        predicted = np.argmax(first_output(prediction.predictions), axis=-1)
        references = prediction.label_ids
        class_ids = list(range(len(self.labels)))
        per_class = f1_score(references, predicted, labels=class_ids, average=None, zero_division=0)
        metrics = {"accuracy": float(accuracy_score(references, predicted)), "f1_macro": float(np.mean(per_class))}
        metrics.update({f"f1_{name}": float(score) for name, score in zip(self.labels, per_class, strict=True)})
        return metrics

    def predict_from_logits(self, logits_of: LogitsOf, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        """Each text's label, its probability, and every label's probability, most likely first."""
        cfg = self.recipe.data
        texts = list(rows[cfg.text_column])
        pairs = list(rows[cfg.text_pair_column]) if cfg.text_pair_column else None
        results = []
        for start in range(0, len(texts), PREDICT_BATCH):
            batch = slice(start, start + PREDICT_BATCH)
            encoded = tokenizer(
                texts[batch],
                pairs[batch] if pairs else None,
                truncation=True,
                max_length=self.recipe.training.max_length,
                padding=True,
                return_tensors="pt",
            )
            probabilities = softmax(logits_of(encoded))
            results += [self.ranked(text, row) for text, row in zip(texts[batch], probabilities, strict=True)]
        return results

    def input_columns(self) -> list[str]:
        return [c for c in (self.recipe.data.text_column, self.recipe.data.text_pair_column) if c]


def _check_text(text: Any, column: str, where: str, row: int) -> None:
    if not isinstance(text, str):
        raise DataError(f"{where}: row {row} has no text in column '{column}' (got {text!r})")
