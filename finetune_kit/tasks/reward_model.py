"""Reward models: a sequence scorer trained on preference pairs (TRL's `RewardTrainer`), so that the
chosen reply to a prompt scores above the rejected one. Validation reports the pairwise accuracy and
the mean margin; `predict` scores prompt + reply rows; a GRPO recipe can name the run as a reward.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from datasets import Dataset, DatasetDict
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase
from trl import RewardConfig, RewardTrainer

from finetune_kit.config.rl import RewardRecipe
from finetune_kit.data.conversations import as_turns
from finetune_kit.models.head import ModelHead
from finetune_kit.tasks.base import ReplyScorer, SplitNamedMetrics, Task, TrainerSetup
from finetune_kit.tasks.chat_template import attach_template
from finetune_kit.tasks.pairs import PairRows

SCORED_COLUMNS = ("prompt", "completion")  # what `predict` scores: a reply to a prompt


class PairwiseRewardTrainer(SplitNamedMetrics, RewardTrainer):
    pass


class RewardModelTask(PairRows, ReplyScorer, Task):
    name: ClassVar[str] = "reward"
    pipeline_tag: ClassVar[str] = "text-classification"
    main_metric: ClassVar[str] = "accuracy"  # the share of pairs whose chosen reply scores above the rejected
    evaluate_before_training: ClassVar[bool] = True  # an untrained head ranks pairs at chance: the gain is shown
    sample_unit: ClassVar[str] = "pairs"
    recipe: RewardRecipe

    def model_head(self) -> ModelHead:
        return ModelHead(AutoModelForSequenceClassification, self.recipe.peft_task_type, {"num_labels": 1})

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        attach_template(tokenizer, self.recipe.chat.template)  # pairs are formatted as conversations

    def inspect(self, data: DatasetDict) -> None:
        for split_name, split in data.items():
            self.inspect_eval(split, f"data.{split_name}")

    def inspect_eval(self, rows: Dataset, where: str) -> None:
        for _ in self.pairs(rows, where):
            pass  # every row converts, or the first bad one is named

    def inspect_file_to_evaluate(self, rows: Dataset, where: str) -> None:
        self.inspect_eval(rows, where)

    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        """Conversational pairs: TRL applies the chat template and tokenizes."""
        del tokenizer
        return DatasetDict(
            {name: Dataset.from_list(list(self.pairs(split, f"data.{name}"))) for name, split in data.items()}
        )

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> None:
        del tokenizer
        return None  # TRL's: it pads the chosen and rejected sequences side by side

    def trainer_setup(self) -> TrainerSetup:
        arguments = {
            "max_length": self.recipe.training.max_length,
            "prediction_loss_only": True,  # accuracy and margin are measured in the loss
            "train_sampling_strategy": "random",  # TRL pads pairs itself: no length groups from the runner
        }
        return TrainerSetup(PairwiseRewardTrainer, RewardConfig, arguments, remove_unused_columns=False)

    def input_columns(self) -> list[str]:
        return list(SCORED_COLUMNS)

    def predict(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        """The score of each row's reply (`completion`) to its prompt: higher is preferred."""
        texts = []
        for number, row in enumerate(rows, 1):
            at = f"row {number}"
            reply = as_turns(row["completion"], "assistant", f"{at}, completion")
            texts.append(tokenizer.apply_chat_template(self.prompt_turns(row["prompt"], at) + reply, tokenize=False))
        return [{"score": score} for score in reward_scores(model, tokenizer, texts, self.recipe.training.max_length)]

    def card_facts(self) -> dict[str, Any]:
        return {"reward model": "scores a reply to a prompt; trained so that chosen replies score above rejected ones"}


def reward_scores(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, batch_size: int = 16
) -> list[float]:
    """The model's score of each formatted conversation, in batches padded to their longest."""
    model.eval()
    device = next(model.parameters()).device
    scores: list[float] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            add_special_tokens=False,
            return_tensors="pt",
        ).to(device)
        with torch.no_grad():
            scores += model(**batch).logits[:, 0].float().tolist()
    return scores
