"""Preference tuning of chat models after SFT: DPO and its variants, or ORPO, through TRL's trainers.

Rows are `prompt` / `chosen` / `rejected`, each a string or a list of messages, formatted with the
chat template. TRL does the rest: with an adapter the reference model is the starting weights
under the adapter's initial state (no second model in memory); in full fine-tuning, a frozen copy.
Validation reports the reward accuracy and margin and the chosen / rejected log-probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from datasets import Dataset, DatasetDict
from pydantic import Field
from transformers import PreTrainedTokenizerBase
from trl import DPOConfig, DPOTrainer
from trl.data_utils import maybe_apply_chat_template
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from finetune_kit.config.recipe import DataConfig, Recipe, Section
from finetune_kit.data import require_columns
from finetune_kit.data.conversations import Message, check_messages
from finetune_kit.errors import DataError
from finetune_kit.tasks.base import SplitNamedMetrics, Task, TrainerSetup
from finetune_kit.tasks.chat_template import ChatDecoder, TemplateSection
from finetune_kit.tasks.held_out import HeldOutGeneration, ScoredReplies

PreferenceLoss = Literal["dpo", "ipo", "hinge", "robust", "orpo"]
DPO_LOSS_TYPES = {"dpo": "sigmoid", "ipo": "ipo", "hinge": "hinge", "robust": "robust"}  # TRL's names
COLUMNS = ("prompt", "chosen", "rejected")


class PreferenceOptions(Section):
    loss: PreferenceLoss = Field("dpo", description="dpo, ipo, hinge, robust (DPO variants), or orpo (no reference)")
    beta: float = Field(
        0.1, gt=0, description="How far from the reference the policy may move (ORPO: odds-ratio weight)"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="dpo, robust: the share of pairs assumed flipped")


class PreferenceData(DataConfig):
    system_prompt: str | None = Field(None, description="Put first in every prompt that has none")


class PreferenceRecipe(Recipe):
    task: Literal["preference"]
    data: PreferenceData
    preference: PreferenceOptions = Field(default_factory=PreferenceOptions)
    chat: TemplateSection = Field(default_factory=TemplateSection)
    generation: HeldOutGeneration = Field(default_factory=HeldOutGeneration)


class PreferenceDPOTrainer(SplitNamedMetrics, DPOTrainer):
    pass


class PreferenceORPOTrainer(SplitNamedMetrics, ORPOTrainer):
    """ORPO prepares only the datasets it is built with: a split given to `evaluate` (the final
    validation, a test split) is formatted and tokenized the same way first."""

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict:
        if eval_dataset is not None and "chosen_input_ids" not in eval_dataset.column_names:
            eval_dataset = eval_dataset.map(
                maybe_apply_chat_template, fn_kwargs={"processing_class": self.processing_class}
            ).map(self.tokenize_row)
        return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)


class PreferenceTask(ChatDecoder, ScoredReplies, Task):
    """data.train and data.validation hold pairs; data.test, when given, holds conversations with
    reference replies (an SFT mix's test split), answered and scored before and after training."""

    name: ClassVar[str] = "preference"
    recipe_class: ClassVar[type[Recipe]] = PreferenceRecipe
    pipeline_tag: ClassVar[str] = "text-generation"
    main_metric: ClassVar[str] = "rewards/accuracies"
    evaluate_before_training: ClassVar[bool] = True  # the log-probabilities, and the held-out scores, to compare
    recipe: PreferenceRecipe

    def inspect(self, data: DatasetDict) -> None:
        pairs = DatasetDict({name: split for name, split in data.items() if name != "test"})
        require_columns(pairs, {"prompt column": "prompt", "chosen column": "chosen", "rejected column": "rejected"})
        for split_name, split in pairs.items():
            self.inspect_eval(split, f"data.{split_name}")
        if "test" in data:
            self.check_held_out(data["test"])

    def inspect_eval(self, rows: Dataset, where: str) -> None:
        for _ in self._pairs(rows, where):
            pass  # every row converts, or the first bad one is named

    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        """Conversational prompt / chosen / rejected rows: TRL applies the template and tokenizes.
        The test conversations are answered by generation, not fed to the trainer."""
        del tokenizer
        return DatasetDict(
            {
                name: Dataset.from_list(list(self._pairs(split, f"data.{name}")))
                for name, split in data.items()
                if name != "test"
            }
        )

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> None:
        del tokenizer
        return None  # the TRL trainer's own: it pads chosen and rejected side by side

    def trainer_setup(self) -> TrainerSetup:
        options, length = self.recipe.preference, self.recipe.training.max_length
        common = {
            "beta": options.beta,
            "max_length": length,
            "prediction_loss_only": True,  # the rewards are measured in the loss: no logits are kept
            "train_sampling_strategy": "random",
        }
        if options.loss == "orpo":
            return TrainerSetup(PreferenceORPOTrainer, ORPOConfig, common, remove_unused_columns=False)
        dpo = {"loss_type": [DPO_LOSS_TYPES[options.loss]], "label_smoothing": options.label_smoothing}
        return TrainerSetup(PreferenceDPOTrainer, DPOConfig, common | dpo, remove_unused_columns=False)

    def card_facts(self) -> dict[str, Any]:
        options = self.recipe.preference
        return {"preference loss": options.loss, "beta": options.beta}

    def _pairs(self, rows: Dataset, where: str) -> Iterator[dict[str, list[Message]]]:
        """Each row as conversational prompt / chosen / rejected, checked; `where` names it in errors."""
        system = self.recipe.data.system_prompt
        for number, row in enumerate(rows, 1):
            at = f"{where} row {number}"
            prompt = _turns(row["prompt"], "user", f"{at}, prompt")
            if system and prompt[0]["role"] != "system":
                prompt = [{"role": "system", "content": system}, *prompt]
            chosen, rejected = (_turns(row[c], "assistant", f"{at}, {c}") for c in ("chosen", "rejected"))
            if chosen == rejected:
                raise DataError(f"{at}: chosen and rejected are the same; a pair must differ to teach a preference")
            check_messages(prompt + chosen, at)
            yield {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _turns(value: Any, role: str, where: str) -> list[Message]:
    """A string is one message of `role`; a list of messages is kept. Empty is an error."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where} is empty")
        return [{"role": role, "content": value}]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in value)
    ):
        if not any(str(m["content"]).strip() for m in value):
            raise DataError(f"{where} is empty")
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise DataError(f"{where}: expected text or a list of {{role, content}} messages")
