"""Causal language modelling: pretrain or fine-tune a decoder on raw text; perplexity, bits per
token and per character; sample generations."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from itertools import chain
from typing import Any, ClassVar

import numpy as np
import torch
from datasets import Dataset, DatasetDict, IterableDataset
from transformers import AutoModelForCausalLM, EvalPrediction, PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.config.generative import CausalLmRecipe
from finetune_kit.data import Stream
from finetune_kit.errors import DataError
from finetune_kit.models.head import ModelHead
from finetune_kit.progress import SILENT, Progress
from finetune_kit.tasks.base import RawTextColumn, SamplesDuringTraining, StreamedTraining, Task
from finetune_kit.tasks.common import CUT_COLUMN, IGNORE_INDEX, drop_cut_column, first_output
from finetune_kit.tasks.generation import SampleGenerations, generate_texts

PACKING_ROWS = 10_000  # rows packed together at once: at most one short block per this many rows


class CausalLmTask(RawTextColumn, SamplesDuringTraining, StreamedTraining, Task):
    name: ClassVar[str] = "causal-lm"
    pipeline_tag: ClassVar[str] = "text-generation"
    main_metric: ClassVar[str] = "perplexity"
    greater_is_better: ClassVar[bool] = False
    evaluate_before_training: ClassVar[bool] = True
    recipe: CausalLmRecipe

    def model_head(self) -> ModelHead:
        return ModelHead(AutoModelForCausalLM, self.recipe.peft_task_type)

    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        encode, block = self._encoder(tokenizer), self.recipe.training.max_length
        return DatasetDict(
            {
                name: drop_cut_column(
                    split.map(
                        encode,
                        batched=True,
                        batch_size=PACKING_ROWS,
                        remove_columns=split.column_names,
                        desc=f"Tokenizing {name}",
                    ),
                    f"{name} rows",
                    block,
                )
                for name, split in data.items()
            }
        )

    def check_row(self, row: dict[str, Any], where: str, number: int) -> None:
        column = self.recipe.data.text_column
        if not isinstance(row[column], str):
            raise DataError(f"{where}: row {number} has no text in column '{column}' (got {row[column]!r})")

    def stream_features(self, stream: Stream, tokenizer: PreTrainedTokenizerBase) -> IterableDataset:
        """Packed as the loaded splits are, PACKING_ROWS rows at a time; rows cut are not counted (that would
        read the stream)."""
        rows = stream.checked(self.check_row)
        encoded = rows.map(
            self._encoder(tokenizer), batched=True, batch_size=PACKING_ROWS, remove_columns=list(stream.columns)
        )
        return encoded.remove_columns(CUT_COLUMN)

    def _encoder(self, tokenizer: PreTrainedTokenizerBase) -> Callable[[dict[str, list]], dict[str, list]]:
        column, block = self.recipe.data.text_column, self.recipe.training.max_length

        def encode(batch: dict[str, list]) -> dict[str, list]:
            texts = batch[column]
            encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
            eos = [tokenizer.eos_token_id]
            ids = [row if text.endswith("\n") else row + eos for row, text in zip(encoded, texts, strict=True)]
            if self.recipe.data.packing:
                rows, cut = pack(ids, block), []
            else:
                rows, cut = [row[:block] for row in ids], [len(row) > block for row in ids]
            return {"input_ids": rows, "length": [len(row) for row in rows], CUT_COLUMN: cut or [False] * len(rows)}

        return encode

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
        return CausalLmCollator(tokenizer.pad_token_id)

    def logits_for_metrics(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return next_token_losses(logits, labels)

    def compute_metrics(self, prediction: EvalPrediction, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        return perplexity_metrics(prediction, tokenizer)

    def training_callbacks(self, write_log: Callable[[dict[str, Any]], None]) -> list[SampleGenerations]:
        generation = self.recipe.generation
        return [SampleGenerations(generation.prompts, generation, write_log, continue_prompt=True)]

    def final_results(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DatasetDict,
        progress: Progress = SILENT,
    ) -> dict[str, Any]:
        del data  # the samples come from the recipe's fixed prompts
        prompts = self.recipe.generation.prompts
        with progress.phase("generate", total=len(prompts), unit="samples"):
            texts = generate_texts(model, tokenizer, prompts, self.recipe.generation, continue_prompt=True)
        return {"samples": [{"prompt": p, "text": t} for p, t in zip(prompts, texts, strict=True)]}

    def predict(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        prompts = list(rows[self.recipe.data.text_column])
        texts = generate_texts(model, tokenizer, prompts, self.recipe.generation, continue_prompt=True)
        return [{"prompt": p, "generated": t} for p, t in zip(prompts, texts, strict=True)]


def next_token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per position, the loss of predicting the next token (0 where nothing is predicted): what
    perplexity needs from an evaluation batch, never its vocabulary-sized logits."""
    losses = torch.nn.functional.cross_entropy(
        first_output(logits)[:, :-1].float().transpose(1, 2),
        labels[:, 1:],
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return torch.nn.functional.pad(losses, (0, 1))


def perplexity_metrics(prediction: EvalPrediction, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
    """Perplexity and bits per token and per character, from `next_token_losses` of every batch."""
    losses = np.asarray(prediction.predictions)[:, :-1]
    targets = np.asarray(prediction.label_ids)[:, 1:]
    scored = targets != IGNORE_INDEX
    total, tokens = float(losses[scored].sum()), int(scored.sum())
    characters = int(characters_per_token(tokenizer, len(tokenizer))[targets[scored]].sum())
    mean = total / max(tokens, 1)
    return {
        "perplexity": math.exp(min(mean, 50)),
        "bits_per_token": mean / math.log(2),
        "bits_per_character": total / max(characters, 1) / math.log(2),
        "nats_per_character": total / max(characters, 1),
    }


def pack(rows: list[list[int]], size: int) -> list[list[int]]:
    """Concatenate token rows and cut the stream into `size`-token blocks. The last block keeps the
    remainder (shorter): no token is lost or repeated."""
    stream = list(chain.from_iterable(rows))
    return [stream[i : i + size] for i in range(0, len(stream), size)]


class CausalLmCollator:
    """Pads a batch; labels are the inputs, ignored on padding only (the end-of-text token may
    also be the padding token, and must still be learned: it is how the model learns to stop)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), longest), dtype=torch.long)
        for i, feature in enumerate(features):
            ids = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            input_ids[i, : len(ids)] = ids
            attention_mask[i, : len(ids)] = 1
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@lru_cache(maxsize=2)
def characters_per_token(tokenizer: PreTrainedTokenizerBase, vocabulary_size: int) -> np.ndarray:
    """Characters each token stands for, for bits per character; special tokens stand for none.
    Computed once per tokenizer and vocabulary size (added tokens make a new table): every
    evaluation needs it."""
    vocabulary = tokenizer.convert_ids_to_tokens(list(range(vocabulary_size)))
    counts = np.array([len(tokenizer.convert_tokens_to_string([token])) for token in vocabulary], dtype=np.int64)
    counts[tokenizer.all_special_ids] = 0
    return counts
