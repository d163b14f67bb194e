"""Instruction tuning of chat models (SFT): conversations formatted with the chat template, loss on
the assistant's replies, packed without cross-contamination, scored by generation on held-out prompts.

TRL does the training (`SFTTrainer`). This module adds what TRL leaves to the user: packing that
keeps each row a random sample of the data (`packing`), the four data layouts, reply masks for
any template (TRL's own need `{% generation %}` markers), checked rows, packed batches that keep
rows apart (TRL's padding-free batches flatten them into one sequence, which costs the square of
the whole batch in attention without a variable-length kernel), a loss that projects only reply
positions through the vocabulary-wide LM head (`reply_logits`), and scores of generated answers
before and after training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from datasets import Dataset, DatasetDict, IterableDataset
from transformers import PreTrainedTokenizerBase
from transformers.trainer_utils import EvalLoopOutput
from trl import SFTConfig, SFTTrainer

from finetune_kit.config.chat import SftRecipe
from finetune_kit.data import Stream
from finetune_kit.data.conversations import detect_format, to_messages
from finetune_kit.tasks.base import SplitNamedMetrics, StreamedTraining, Task, TrainerSetup
from finetune_kit.tasks.chat_decoder import ChatDecoder
from finetune_kit.tasks.chat_template import encode_conversation
from finetune_kit.tasks.common import CUT_COLUMN, IGNORE_INDEX, drop_cut_column, logger
from finetune_kit.tasks.held_out import ScoredReplies
from finetune_kit.tasks.packing import RowsT, pack_in_random_order
from finetune_kit.tasks.reply_logits import ReplyLogitsLoss

MAX_LOG_PERPLEXITY = 50  # exp() of a diverged loss stays a finite number in metrics.json


class InstructionTuningTask(ChatDecoder, ScoredReplies, StreamedTraining, Task):
    name: ClassVar[str] = "sft"
    pipeline_tag: ClassVar[str] = "text-generation"
    main_metric: ClassVar[str] = "perplexity"  # of the replies in data.validation
    greater_is_better: ClassVar[bool] = False
    evaluate_before_training: ClassVar[bool] = True
    sample_unit: ClassVar[str] = "conversations"
    recipe: SftRecipe

    def inspect(self, data: DatasetDict) -> None:
        for split_name, split in data.items():
            self.inspect_eval(split, f"data.{split_name}")
        if "test" in data:
            self.check_held_out(data["test"])

    def inspect_eval(self, rows: Dataset, where: str) -> None:
        for _ in self.conversations(rows, where):
            pass  # every row converts, or the first bad one is named

    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        encode, limit = self._encoder(tokenizer), self.recipe.training.max_length
        features = {}
        for name, split in data.items():
            layout = detect_format(split.column_names, self.recipe.data.conversation_format, f"data.{name}")
            encoded = split.map(
                encode, fn_kwargs={"layout": layout}, remove_columns=split.column_names, desc=f"Tokenizing {name}"
            )
            features[name] = self._packed(
                _drop_unlearnable(drop_cut_column(encoded, f"{name} conversations", limit), name)
            )
        return DatasetDict(features)

    def check_row(self, row: dict[str, Any], where: str, number: int) -> None:
        layout = detect_format(row, self.recipe.data.conversation_format, where)
        to_messages(row, layout, self.recipe.data.system_prompt, f"{where} row {number}")

    def stream_features(self, stream: Stream, tokenizer: PreTrainedTokenizerBase) -> IterableDataset:
        """Conversations cut or dropped for length are not counted (that would read the stream)."""
        layout = detect_format(stream.columns, self.recipe.data.conversation_format, stream.where)
        encoded = stream.checked(self.check_row).map(
            self._encoder(tokenizer), fn_kwargs={"layout": layout}, remove_columns=list(stream.columns)
        )
        return self._packed(encoded.remove_columns(CUT_COLUMN).filter(_learnable, input_columns="labels"))

    def _encoder(self, tokenizer: PreTrainedTokenizerBase) -> Callable[[dict[str, Any], str], dict[str, Any]]:
        chat, limit = self.recipe.chat, self.recipe.training.max_length

        def encode(row: dict[str, Any], layout: str) -> dict[str, Any]:
            messages = to_messages(row, layout, self.recipe.data.system_prompt, "row")
            ids, labels, cut = encode_conversation(tokenizer, messages, chat.train_on, limit)
            return {"input_ids": ids, "labels": labels, "length": len(ids), CUT_COLUMN: cut}

        return encode

    def _packed(self, rows: RowsT) -> RowsT:
        """Conversations packed in a random order (with chat.packing); rows keep each conversation's length."""
        if not self.recipe.chat.packing:
            return rows
        return pack_in_random_order(rows, self.recipe.training.max_length, self.recipe.training.seed)

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable[[list[dict]], dict[str, Any]]:
        return PackedRowsCollator(tokenizer.pad_token_id)

    def trainer_setup(self) -> TrainerSetup:
        packing, grouped = self.recipe.chat.packing, self.recipe.training.group_by_length
        return TrainerSetup(
            PerplexitySFTTrainer,
            SFTConfig,
            {
                "prediction_loss_only": True,  # the loss is all evaluation needs: no logits are built
                "max_length": self.recipe.training.max_length,
                "packing": False,  # done in `preprocess`: SFTTrainer would also flatten each batch into one row
                "padding_free": False,
                # packed rows are all about max_length long; unpacked ones are grouped by length
                "train_sampling_strategy": "group_by_length" if grouped and not packing else "random",
            },
            remove_unused_columns=False,  # the collator reads each row's `seq_lengths`
        )

    def tokenizer_texts(self, rows: Dataset) -> Iterator[str]:
        for messages in self.conversations(rows, "data.train"):
            yield from (message["content"] for message in messages)

    def examples_per_row(self, rows: Dataset) -> float:
        if "seq_lengths" not in rows.column_names:  # unpacked: one conversation a row
            return 1.0
        return sum(len(lengths) for lengths in rows["seq_lengths"]) / max(len(rows), 1)

    def card_facts(self) -> dict[str, Any]:
        chat = self.recipe.chat
        return {
            "loss on": "assistant replies" if chat.train_on == "assistant" else "every token",
            "packing": "several conversations per row, attention kept within each" if chat.packing else "none",
        }


class PerplexitySFTTrainer(SplitNamedMetrics, ReplyLogitsLoss, SFTTrainer):
    """SFTTrainer whose loss projects only the reply positions through the LM head, and whose
    evaluations also report perplexity: exp of the loss on the reply tokens."""

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> EvalLoopOutput:
        output = super().evaluation_loop(*args, **kwargs)
        for key, value in list(output.metrics.items()):
            if key.endswith("_loss"):
                output.metrics[key.removesuffix("loss") + "perplexity"] = math.exp(min(value, MAX_LOG_PERPLEXITY))
        return output


class PackedRowsCollator:
    """Pads a batch of (packed) rows to its longest. Position ids restart at every conversation of
    a row (and at its padding), and no attention mask is given, so transformers builds a
    block-diagonal causal mask per row: no conversation attends to another, and attention costs
    rows x length^2, not (rows x length)^2 as when a batch is flattened into one sequence for the
    variable-length kernels (flash attention) that CPUs and SDPA do not have."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            used = len(example["input_ids"])
            input_ids[row, :used] = torch.tensor(example["input_ids"])
            labels[row, :used] = torch.tensor(example["labels"])
            segments = [*example.get("seq_lengths", [used]), width - used]
            position_ids[row] = torch.cat([torch.arange(length) for length in segments])
        labels[position_ids == 0] = IGNORE_INDEX  # a conversation's first token is never predicted from another's
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


def _learnable(labels: list[int]) -> bool:
    """Whether a conversation has a reply token left to learn from after the cut at max_length."""
    return any(label != IGNORE_INDEX for label in labels)


def _drop_unlearnable(rows: Dataset, split: str) -> Dataset:
    """Conversations cut so short that no reply token is left teach nothing: dropped, and counted."""
    kept = rows.filter(_learnable, input_columns="labels")
    if len(kept) < len(rows):
        logger.warning(
            "%s: %d of %d conversations dropped: no reply left within training.max_length",
            split,
            len(rows) - len(kept),
            len(rows),
        )
    return kept
