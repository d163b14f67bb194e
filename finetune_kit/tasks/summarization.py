"""Summarization: ROUGE-1/2/L/Lsum (rouge-score), against every reference a row has."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import numpy as np
from datasets import Dataset, DatasetDict
from pydantic import Field
from rouge_score import rouge_scorer
from transformers import Trainer

from finetune_kit.config.recipe import DataSource, Recipe
from finetune_kit.data import load_source, require_columns
from finetune_kit.errors import DataError
from finetune_kit.tasks.seq2seq import GeneratedTextRecipe, GeneratedTextTask, Seq2SeqData

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class SummarizationData(Seq2SeqData):
    text_column: str = Field("document", description="The text to summarize (DialogSum: dialogue)")
    summary_column: str = "summary"
    test_references: DataSource | None = Field(
        None, description="All references of the test rows: a file with an id column and a list column"
    )
    id_column: str = Field("id", description="Joins test rows to test_references")
    references_column: str = Field("summaries", description="List of reference summaries in test_references")


class SummarizationRecipe(GeneratedTextRecipe):
    task: Literal["summarization"]
    data: SummarizationData


class SummarizationTask(GeneratedTextTask):
    name: ClassVar[str] = "summarization"
    recipe_class: ClassVar[type[Recipe]] = SummarizationRecipe
    pipeline_tag: ClassVar[str] = "summarization"
    main_metric: ClassVar[str] = "rougeL"
    recipe: SummarizationRecipe

    def __init__(self, recipe: SummarizationRecipe) -> None:
        super().__init__(recipe)
        self._references: dict[str, list[list[str]]] = {}

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
        self._references["test"] = [list(by_id[row_id]) for row_id in data["test"][cfg.id_column]]

    def pairs(self, rows: Dataset, where: str, need_targets: bool = True) -> tuple[list[str], list[str] | None]:
        cfg = self.recipe.data
        required = {
            "data.text_column": cfg.text_column,
            "data.summary_column": cfg.summary_column if need_targets else None,
        }
        require_columns(DatasetDict({where: rows}), required)
        targets = list(rows[cfg.summary_column]) if cfg.summary_column in rows.column_names else None
        return list(rows[cfg.text_column]), targets

    def evaluate_split(self, trainer: Trainer, features: Dataset, split: str) -> dict[str, float]:
        """With several references per row, ROUGE takes each row's best-matching one (as
        rouge-score's `score_multi`); the single-reference scores stay, suffixed `_first_reference`."""
        references = self._references.get(split)
        if references is None:
            return super().evaluate_split(trainer, features, split)
        output = trainer.predict(features, metric_key_prefix=split)
        # Evaluation batches are grouped by length: put the references in the order rows were scored.
        sampler = trainer._get_eval_sampler(features)
        order = list(sampler) if sampler is not None else list(range(len(features)))
        references = [references[i] for i in order]
        metrics: dict[str, Any] = dict(output.metrics)
        for rouge in ROUGE_TYPES:
            metrics[f"{split}_{rouge}_first_reference"] = metrics.pop(f"{split}_{rouge}")
        multi = self.score(self._decode(output.predictions), references)
        metrics |= {f"{split}_{key}": value for key, value in multi.items()}
        metrics[f"{split}_references_per_row"] = float(np.mean([len(r) for r in references]))
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
