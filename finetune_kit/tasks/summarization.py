"""Summarization: ROUGE-1/2/L/Lsum (rouge-score), against every reference a row has."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import ClassVar

import numpy as np
from datasets import Dataset, DatasetDict
from rouge_score import rouge_scorer
from transformers import EvalPrediction, PreTrainedTokenizerBase

from finetune_kit.config.generative import SummarizationRecipe
from finetune_kit.data import load_source, require_columns
from finetune_kit.errors import DataError
from finetune_kit.tasks.base import TrainerSetup
from finetune_kit.tasks.seq2seq import ROW_ID, GeneratedTextTask, decode

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class SummarizationTask(GeneratedTextTask):
    name: ClassVar[str] = "summarization"
    pipeline_tag: ClassVar[str] = "summarization"
    main_metric: ClassVar[str] = "rougeL"
    recipe: SummarizationRecipe

    def __init__(self, recipe: SummarizationRecipe) -> None:
        super().__init__(recipe)
        self.test_references: list[list[str]] | None = None  # every reference of each test row

    def inspect(self, data: DatasetDict) -> None:
        super().inspect(data)
        cfg = self.recipe.data
        if cfg.test_references is None:
            return
        if "test" not in data:
            raise DataError("data.test_references: needs a data.test split to attach the references to")
        table = load_source(cfg.test_references, "test_references")
        require_columns(DatasetDict(test_references=table), {"data.id_column": cfg.id_column})
        require_columns(DatasetDict(test_references=table), {"data.references_column": cfg.references_column})
        require_columns(DatasetDict(test=data["test"]), {"data.id_column": cfg.id_column})
        by_id = dict(zip(table[cfg.id_column], table[cfg.references_column], strict=True))
        missing = next((row_id for row_id in data["test"][cfg.id_column] if row_id not in by_id), None)
        if missing is not None:
            raise DataError(f"data.test_references: no references for test row id '{missing}'")
        self.test_references = [list(by_id[row_id]) for row_id in data["test"][cfg.id_column]]

    def trainer_setup(self) -> TrainerSetup:
        setup = super().trainer_setup()
        if self.recipe.data.test_references is None:
            return setup
        return replace(setup, arguments={**setup.arguments, "label_names": ["labels", ROW_ID]})

    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        """Test rows carry their row number through evaluation, to find their references again."""
        features = super().preprocess(data, tokenizer)
        if self.test_references is not None:
            features["test"] = features["test"].add_column(ROW_ID, list(range(len(features["test"]))))
        return features

    def pairs(self, rows: Dataset, where: str, need_targets: bool = True) -> tuple[list[str], list[str] | None]:
        cfg = self.recipe.data
        required = {
            "data.text_column": cfg.text_column,
            "data.summary_column": cfg.summary_column if need_targets else None,
        }
        require_columns(DatasetDict({where: rows}), required)
        targets = list(rows[cfg.summary_column]) if cfg.summary_column in rows.column_names else None
        return list(rows[cfg.text_column]), targets

    def compute_metrics(self, prediction: EvalPrediction, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        """With several references per row, ROUGE takes each row's best-matching one (as
        rouge-score's `score_multi`); the single-reference scores stay, suffixed `_first_reference`."""
        if not isinstance(prediction.label_ids, tuple):
            return super().compute_metrics(prediction, tokenizer)
        labels, row_ids = prediction.label_ids
        first = super().compute_metrics(EvalPrediction(prediction.predictions, labels), tokenizer)
        references = [self.test_references[int(row)] for row in row_ids]
        metrics = {f"{rouge}_first_reference": value for rouge, value in first.items()}
        metrics |= self.score(decode(prediction.predictions, tokenizer), references)
        metrics["references_per_row"] = float(np.mean([len(r) for r in references]))
        return metrics

    def score(self, predictions: list[str], references: list[list[str]]) -> dict[str, float]:
        scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=True)
        totals = dict.fromkeys(ROUGE_TYPES, 0.0)
        for prediction, refs in zip(predictions, references, strict=True):
            scores = scorer.score_multi([_sentences(r) for r in refs], _sentences(prediction))
            for rouge in ROUGE_TYPES:
                totals[rouge] += scores[rouge].fmeasure
        return {rouge: 100 * total / max(len(predictions), 1) for rouge, total in totals.items()}

    def input_columns(self) -> list[str]:
        return [self.recipe.data.text_column]


def _sentences(text: str) -> str:
    """One sentence per line: how rougeLsum finds summary-level sentences."""
    return "\n".join(SENTENCE_END.split(text.strip()))
