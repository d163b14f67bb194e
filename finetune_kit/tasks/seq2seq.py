"""Sequence-to-sequence tasks (translation, summarization): `Seq2SeqTrainer` with generation at
evaluation; each task says where sources and targets are and how outputs are scored."""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict
from transformers import (
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from finetune_kit.config.generation import GenerationSettings
from finetune_kit.errors import DataError
from finetune_kit.models.head import ModelHead
from finetune_kit.tasks.base import Task, TrainerSetup
from finetune_kit.tasks.common import IGNORE_INDEX, warn_cut
from finetune_kit.tasks.generation import generate_texts

ROW_ID = "row_id"  # carried through evaluation where each row's extra references must be found again


class Seq2SeqTask(Task):
    """Sources → targets. Subclasses say where the pairs are (`pairs`)."""

    @abstractmethod
    def pairs(self, rows: Dataset, where: str, need_targets: bool = True) -> tuple[list[str], list[str] | None]:
        """Source texts and target texts; without `need_targets` (predict) targets may be None."""

    def model_head(self) -> ModelHead:
        return ModelHead(AutoModelForSeq2SeqLM, self.recipe.peft_task_type)

    def trainer_setup(self) -> TrainerSetup:
        return TrainerSetup(Seq2SeqTrainer, Seq2SeqTrainingArguments)

    @property
    def generation(self) -> GenerationSettings:
        return self.recipe.generation

    def inspect(self, data: DatasetDict) -> None:
        for split_name, split in data.items():
            self.inspect_eval(split, f"data.{split_name}")

    def inspect_eval(self, rows: Dataset, where: str) -> None:
        sources, targets = self.pairs(rows, where)
        for i, (source, target) in enumerate(zip(sources, targets, strict=True)):
            if not (isinstance(source, str) and source.strip() and isinstance(target, str) and target.strip()):
                raise DataError(f"{where}: row {i}: empty source or target text")

    def encoder_inputs(self, sources: list[str], tokenizer: PreTrainedTokenizerBase) -> list[str]:
        """What the encoder reads for each source: the source after the recipe's prefix."""
        del tokenizer  # plain prefixing needs no vocabulary
        return [self.recipe.data.source_prefix + s for s in sources]

    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        source_limit, target_limit = self.recipe.training.max_length, self.recipe.data.max_target_length
        features = {}
        for name, split in data.items():
            sources, targets = self.pairs(split, f"data.{name}")
            inputs = self.encoder_inputs(sources, tokenizer)
            encoded = _truncated(tokenizer, f"{name} sources", source_limit, text=inputs)
            labels = _truncated(tokenizer, f"{name} targets", target_limit, text_target=targets)["input_ids"]
            features[name] = Dataset.from_dict(
                {
                    "input_ids": encoded["input_ids"],
                    "attention_mask": encoded["attention_mask"],
                    "labels": labels,
                    "length": [len(ids) for ids in encoded["input_ids"]],
                }
            )
        return DatasetDict(features)

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> DataCollatorForSeq2Seq:
        return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX)

    def predict(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        sources, _ = self.pairs(rows, "input", need_targets=False)
        prefixed = [self.recipe.data.source_prefix + s for s in sources]
        outputs = generate_texts(model, tokenizer, prefixed, self.generation, continue_prompt=False)
        return [{"source": s, "generated": o} for s, o in zip(sources, outputs, strict=True)]

    def tokenizer_texts(self, rows: Dataset) -> Iterator[str]:
        sources, targets = self.pairs(rows, "data.train")
        yield from sources
        yield from targets or []


class RowTrackingSeq2SeqTrainer(Seq2SeqTrainer):
    """Evaluation batches are grouped by length, so rows come back out of order. Rows that carry a
    `row_id` return it beside their labels (the `label_names` the task sets), which tells each
    prediction's row without relying on the sampler's order."""

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        row_ids = inputs.pop(ROW_ID, None)
        loss, generated, labels = super().prediction_step(
            model, inputs, prediction_loss_only, ignore_keys=ignore_keys, **gen_kwargs
        )
        return loss, generated, labels if row_ids is None or labels is None else (labels, row_ids)


class GeneratedTextTask(Seq2SeqTask):
    """A seq2seq task scored on generated text (`score`): evaluation generates, as at use time."""

    @abstractmethod
    def score(self, predictions: list[str], references: list[list[str]]) -> dict[str, float]:
        """Corpus scores of decoded outputs against one or more references per row."""

    def trainer_setup(self) -> TrainerSetup:
        arguments = {
            "predict_with_generate": True,
            "generation_max_length": self.recipe.data.max_target_length,
            "generation_num_beams": self.generation.num_beams,
        }
        return TrainerSetup(RowTrackingSeq2SeqTrainer, Seq2SeqTrainingArguments, arguments)

    def compute_metrics(self, prediction: EvalPrediction, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        predictions = decode(prediction.predictions, tokenizer)
        references = [[text] for text in decode(prediction.label_ids, tokenizer)]
        return self.score(predictions, references)


def decode(ids: Any, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Token ids (padded with the ignored label across batches) → stripped texts."""
    ids = np.where(np.asarray(ids) == IGNORE_INDEX, tokenizer.pad_token_id, ids)
    return [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def _truncated(tokenizer: PreTrainedTokenizerBase, what: str, limit: int, **texts: Any) -> dict[str, list]:
    """One tokenization, cut at `limit` tokens; how many rows were cut is counted from the overflow
    the tokenizer reports."""
    encoded = tokenizer(**texts, truncation=True, max_length=limit, return_overflowing_tokens=True)
    rows = encoded.pop("overflow_to_sample_mapping")
    first = [i for i, row in enumerate(rows) if i == 0 or rows[i - 1] != row]  # later pieces are overflow
    warn_cut(what, sum(pieces > 1 for pieces in Counter(rows).values()), len(first), limit)
    return {key: [values[i] for i in first] for key, values in encoded.items()}
