"""Masked-LM domain adaptation: continue pretraining a checkpoint on raw text; perplexity before/after."""

from __future__ import annotations

import math
from itertools import chain
from typing import ClassVar

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import (
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    pipeline,
)

from finetune_kit.config.encoders import MaskedLmRecipe
from finetune_kit.errors import DataError
from finetune_kit.models.head import ModelHead
from finetune_kit.tasks.base import RawTextColumn, Task, TrainerSetup
from finetune_kit.tasks.common import IGNORE_INDEX, as_text, first_output


class MaskedLmTask(RawTextColumn, Task):
    name: ClassVar[str] = "masked-lm"
    pipeline_tag: ClassVar[str] = "fill-mask"
    main_metric: ClassVar[str] = "perplexity"
    greater_is_better: ClassVar[bool] = False
    evaluate_before_training: ClassVar[bool] = True
    recipe: MaskedLmRecipe

    def model_head(self) -> ModelHead:
        return ModelHead(AutoModelForMaskedLM, self.recipe.peft_task_type)

    def trainer_setup(self) -> TrainerSetup:
        return TrainerSetup(remove_unused_columns=False)  # the collator needs special_tokens_mask / offset_mapping

    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        cfg, block = self.recipe.data, self.recipe.training.max_length
        wwm = cfg.whole_word_masking

        def encode(batch: dict[str, list]) -> dict[str, list]:
            texts = [text for text in map(as_text, batch[cfg.text_column]) if text.strip()]
            if cfg.line_by_line:
                return tokenizer(
                    texts,
                    truncation=True,
                    max_length=block,
                    return_special_tokens_mask=True,
                    return_offsets_mapping=wwm,
                )
            encoded = tokenizer(texts, return_special_tokens_mask=True, return_offsets_mapping=wwm)
            return _blocks({k: v for k, v in encoded.items()}, block)

        return DatasetDict(
            {
                name: split.map(encode, batched=True, remove_columns=split.column_names, desc=f"Tokenizing {name}")
                for name, split in data.items()
            }
        )

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> DataCollatorForLanguageModeling:
        # Whole words are always replaced by the mask token (transformers supports no random replacement
        # there): said outright, rather than left for the collator to warn about and override.
        replacement = (
            {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if self.recipe.data.whole_word_masking else {}
        )
        return DataCollatorForLanguageModeling(
            tokenizer,
            mlm_probability=self.recipe.data.mlm_probability,
            whole_word_mask=self.recipe.data.whole_word_masking,
            seed=self.recipe.training.seed,  # the same masks for every evaluation: comparable perplexities
            **replacement,
        )

    def logits_for_metrics(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per row: summed cross-entropy over masked tokens, and their count (never the full logits)."""
        losses = torch.nn.functional.cross_entropy(
            first_output(logits).float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
        )
        return torch.stack([losses.sum(dim=1), (labels != IGNORE_INDEX).sum(dim=1).float()], dim=1)

    def compute_metrics(self, prediction: EvalPrediction, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        del tokenizer  # the losses are summed per row already
        sums = np.asarray(prediction.predictions).reshape(-1, 2).sum(axis=0)
        mean_loss = float(sums[0] / max(sums[1], 1))
        return {"perplexity": math.exp(min(mean_loss, 50)), "masked_loss": mean_loss}

    def predict(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        fill = pipeline("fill-mask", model=model, tokenizer=tokenizer, top_k=5)
        texts = list(rows[self.recipe.data.text_column])
        missing = next((t for t in texts if tokenizer.mask_token not in t), None)
        if missing is not None:
            raise DataError(f"predict: each text needs a {tokenizer.mask_token} token to fill (got {missing!r})")
        results = []
        for text in texts:
            found = fill(text)
            candidates = found[0] if found and isinstance(found[0], list) else found
            results.append(
                {"text": text, "fills": [{"token": c["token_str"], "score": round(c["score"], 6)} for c in candidates]}
            )
        return results


def _blocks(encoded: dict[str, list[list]], size: int) -> dict[str, list[list]]:
    """Concatenate all rows and cut into `size`-token blocks; the short remainder is dropped."""
    joined = {key: list(chain.from_iterable(values)) for key, values in encoded.items()}
    total = (len(joined["input_ids"]) // size) * size
    return {key: [values[i : i + size] for i in range(0, total, size)] for key, values in joined.items()}
