"""Self-supervised denoising pretraining of an encoder-decoder (BART-style text infilling): spans
of words are replaced by the mask token, and the model rebuilds the original text."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import EvalPrediction, PreTrainedTokenizerBase

from finetune_kit.config.generative import DenoisingRecipe
from finetune_kit.data import require_columns
from finetune_kit.errors import ModelError
from finetune_kit.tasks.base import Task
from finetune_kit.tasks.common import IGNORE_INDEX, first_output
from finetune_kit.tasks.seq2seq import Seq2SeqTask


class DenoisingTask(Seq2SeqTask):
    name: ClassVar[str] = "denoising"
    pipeline_tag: ClassVar[str] = "text2text-generation"
    main_metric: ClassVar[str] = "loss"  # reconstruction loss; generation would be slow and says little
    greater_is_better: ClassVar[bool] = False
    recipe: DenoisingRecipe

    def pairs(self, rows: Dataset, where: str, need_targets: bool = True) -> tuple[list[str], list[str]]:
        """The original texts on both sides: `encoder_inputs` corrupts the sources."""
        require_columns(DatasetDict({where: rows}), {"data.text_column": self.recipe.data.text_column})
        texts = list(rows[self.recipe.data.text_column])
        return texts, texts

    def encoder_inputs(self, sources: list[str], tokenizer: PreTrainedTokenizerBase) -> list[str]:
        """Each text with spans hidden behind the tokenizer's mask token, seeded per row: the same
        corruption every epoch and every run."""
        if tokenizer.mask_token is None:
            raise ModelError("denoising needs a tokenizer with a mask token (BART's <mask>, or a trained tokenizer)")
        seed, prefix = self.recipe.training.seed, self.recipe.data.source_prefix
        return [
            prefix + self.corrupt(text, random.Random(seed * 1_000_003 + i), tokenizer.mask_token)
            for i, text in enumerate(sources)
        ]

    def corrupt(self, text: str, rng: random.Random, mask_token: str) -> str:
        """Replace Poisson-length spans of words by one mask token each until `mask_ratio` of the
        words are hidden."""
        words = text.split(" ")
        budget = max(1, round(self.recipe.data.mask_ratio * len(words)))
        masked = [False] * len(words)
        while sum(masked) < budget:
            span = max(1, _poisson(self.recipe.data.mean_span, rng))
            start = rng.randrange(len(words))
            for i in range(start, min(start + span, len(words))):
                masked[i] = True
        out: list[str] = []
        for word, hidden in zip(words, masked, strict=True):
            if not hidden:
                out.append(word)
            elif not out or out[-1] != mask_token:
                out.append(mask_token)
        return " ".join(out)

    def logits_for_metrics(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return first_output(logits).argmax(dim=-1)

    def compute_metrics(self, prediction: EvalPrediction, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        del tokenizer  # token ids compare as they are
        labels = np.asarray(prediction.label_ids)
        scored = labels != IGNORE_INDEX
        hits = (np.asarray(prediction.predictions) == labels) & scored
        return {"token_accuracy": float(hits.sum() / max(scored.sum(), 1))}

    def input_columns(self) -> list[str]:
        return [self.recipe.data.text_column]

    def tokenizer_texts(self, rows: Dataset) -> Iterator[str]:
        """Each original text once (`pairs` gives it as source and target)."""
        return Task.tokenizer_texts(self, rows)


def _poisson(mean: float, rng: random.Random) -> int:
    """Knuth's method; span lengths are small, so it is quick."""
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k
