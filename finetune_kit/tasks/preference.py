"""Preference tuning of chat models after SFT through TRL's trainers: DPO and its variants, ORPO,
SimPO and CPO (no reference model), or KTO (desirable / undesirable completions, no pairs needed).

Rows are `prompt` / `chosen` / `rejected`, each a string or a list of messages, formatted with the
chat template; KTO also takes unpaired `prompt` / `completion` / `label` rows (and splits pairs into
one row of each label). TRL does the rest: with an adapter the reference model is the starting
weights under the adapter's initial state (no second model in memory); in full fine-tuning, a
frozen copy. Validation reports each trainer's reward metrics and chosen / rejected log-probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer
from trl.data_utils import maybe_apply_chat_template
from trl.experimental.cpo import CPOConfig, CPOTrainer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from finetune_kit.config.chat import UNPAIRED_LOSSES, PreferenceRecipe
from finetune_kit.data.conversations import as_turns, check_messages
from finetune_kit.errors import DataError, ModelError
from finetune_kit.tasks.base import SplitNamedMetrics, Task, TrainerSetup
from finetune_kit.tasks.chat_decoder import ChatDecoder
from finetune_kit.tasks.held_out import ScoredReplies
from finetune_kit.tasks.pairs import PairRows

PAIRED = ("prompt", "chosen", "rejected")
UNPAIRED = ("prompt", "completion", "label")  # KTO's own layout
REWARD_ACCURACY = "rewards/accuracies"  # the share of pairs whose chosen reply out-scores the rejected one


class PreparesEvalSplits(Trainer):
    """ORPO and CPO prepare only the datasets they are built with: a split given to `evaluate` (the
    final validation, a test split) is formatted and tokenized the same way first."""

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict:
        if eval_dataset is not None and "chosen_input_ids" not in eval_dataset.column_names:
            eval_dataset = eval_dataset.map(
                maybe_apply_chat_template, fn_kwargs={"processing_class": self.processing_class}
            ).map(self.tokenize_row)
        return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)


class PreferenceDPOTrainer(SplitNamedMetrics, DPOTrainer):
    pass


class PreferenceORPOTrainer(SplitNamedMetrics, PreparesEvalSplits, ORPOTrainer):
    pass


class PreferenceCPOTrainer(SplitNamedMetrics, PreparesEvalSplits, CPOTrainer):
    pass


class PreferenceKTOTrainer(SplitNamedMetrics, KTOTrainer):
    """KTO's KL baseline scores each prompt with its neighbour's completion, paired once in the
    dataset's order, so the rows train in that order (shuffled once, seeded, by the task). The
    arguments say "random" so that the runner does not regroup the rows by length; the order is set here."""

    def __init__(self, *, args: KTOConfig, **kwargs: Any) -> None:
        args.train_sampling_strategy = "sequential"
        super().__init__(args=args, **kwargs)


@dataclass(frozen=True)
class LossTrainer:
    """How one loss trains: TRL's trainer and config, the config's settings for it, the reward
    metric it is judged by, and whether its rewards are measured against a reference model."""

    trainer_class: type[Trainer]
    arguments_class: type[TrainingArguments]
    arguments: dict[str, Any] = field(default_factory=dict)
    main_metric: str = REWARD_ACCURACY
    uses_reference: bool = True


LOSSES: dict[str, LossTrainer] = {
    "dpo": LossTrainer(PreferenceDPOTrainer, DPOConfig, {"loss_type": ["sigmoid"]}),
    "ipo": LossTrainer(PreferenceDPOTrainer, DPOConfig, {"loss_type": ["ipo"]}),
    "hinge": LossTrainer(PreferenceDPOTrainer, DPOConfig, {"loss_type": ["hinge"]}),
    "robust": LossTrainer(PreferenceDPOTrainer, DPOConfig, {"loss_type": ["robust"]}),
    "orpo": LossTrainer(PreferenceORPOTrainer, ORPOConfig, uses_reference=False),
    "simpo": LossTrainer(PreferenceCPOTrainer, CPOConfig, {"loss_type": "simpo"}, uses_reference=False),
    "cpo": LossTrainer(PreferenceCPOTrainer, CPOConfig, {"loss_type": "sigmoid"}, uses_reference=False),
    # Unpaired rows have no pair to count right: KTO is judged by the mean reward margin instead.
    "kto": LossTrainer(PreferenceKTOTrainer, KTOConfig, {"loss_type": "kto"}, "rewards/margins"),
}


class PreferenceTask(PairRows, ChatDecoder, ScoredReplies, Task):
    """data.train and data.validation hold pairs (or, for KTO, labelled completions); data.test, when
    given, holds conversations with reference replies (an SFT mix's test split), answered and scored
    before and after training."""

    name: ClassVar[str] = "preference"
    pipeline_tag: ClassVar[str] = "text-generation"
    main_metric: ClassVar[str] = REWARD_ACCURACY  # the pairwise losses'; each recipe's loss sets its own below
    evaluate_before_training: ClassVar[bool] = True  # the log-probabilities, and the held-out scores, to compare
    recipe: PreferenceRecipe

    def __init__(self, recipe: PreferenceRecipe) -> None:
        super().__init__(recipe)
        self.loss = LOSSES[recipe.preference.loss]
        self.unpaired = recipe.preference.loss in UNPAIRED_LOSSES
        self.main_metric = self.loss.main_metric

    def inspect(self, data: DatasetDict) -> None:
        for split_name, split in data.items():
            if split_name != "test":
                self.inspect_eval(split, f"data.{split_name}")
        if "test" in data:
            self.check_held_out(data["test"])

    def inspect_file_to_evaluate(self, rows: Dataset, where: str) -> None:
        """Rewards of the reference-based losses are measured against the model training started from;
        a finished run loaded for `eval` does not rebuild it (its rewards would all read 0)."""
        if self.loss.uses_reference:
            raise ModelError(
                f"{where}: {self.recipe.preference.loss} rewards are measured against the run's starting model, "
                "which eval does not rebuild; give these pairs as data.validation of a training run instead"
            )
        self.inspect_eval(rows, where)

    def inspect_eval(self, rows: Dataset, where: str) -> None:
        examples = list(self._examples(rows, where))  # every row converts, or the first bad one is named
        labels = {example["label"] for example in examples} if self.unpaired else set()
        if len(labels) == 1:
            raise DataError(
                f"{where}: every label is {str(labels.pop()).lower()}; KTO learns from desirable (true) and "
                "undesirable (false) completions alike, and measures its reward margin between them: add rows of both"
            )

    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        """Conversational rows: TRL applies the template and tokenizes. Unpaired rows are shuffled
        once (seeded) so that every batch mixes labels and prompts for KTO's KL baseline.
        The test conversations are answered by generation, not fed to the trainer."""
        del tokenizer
        splits = {}
        for name, split in data.items():
            if name != "test":
                rows = Dataset.from_list(list(self._examples(split, f"data.{name}")))
                splits[name] = rows.shuffle(seed=self.recipe.training.seed) if self.unpaired else rows
        return DatasetDict(splits)

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> None:
        del tokenizer
        return None  # the TRL trainer's own: it pads chosen and rejected side by side

    def trainer_setup(self) -> TrainerSetup:
        options = self.recipe.preference
        common = {
            "beta": options.beta,
            "max_length": self.recipe.training.max_length,
            "prediction_loss_only": True,  # the rewards are measured in the loss: no logits are kept
            "train_sampling_strategy": "random",  # TRL's trainers take whole datasets, not the runner's length groups
        }
        arguments = common | options.trl_arguments(self.loss.arguments)
        return TrainerSetup(self.loss.trainer_class, self.loss.arguments_class, arguments, remove_unused_columns=False)

    def card_facts(self) -> dict[str, Any]:
        options = self.recipe.preference
        return {"preference loss": options.loss, "beta": options.beta, **options.loss_options()}

    def _examples(self, rows: Dataset, where: str) -> Iterator[dict[str, Any]]:
        """Rows as the loss's trainer takes them: pairs, or for KTO labelled completions (a pair
        gives a desirable and an undesirable one)."""
        layout = UNPAIRED if "completion" in rows.column_names and "chosen" not in rows.column_names else PAIRED
        if layout == UNPAIRED and not self.unpaired:
            raise DataError(
                f"{where}: prompt / completion / label rows are unpaired; preference.loss "
                f"'{self.recipe.preference.loss}' needs prompt / chosen / rejected pairs (only kto takes unpaired rows)"
            )
        missing = [column for column in layout if column not in rows.column_names]
        if missing:
            layouts = [PAIRED, UNPAIRED] if self.unpaired else [PAIRED]
            raise DataError(
                f"{where}: column '{missing[0]}' not found; columns are: {', '.join(rows.column_names)} "
                f"(rows need {' or '.join(', '.join(columns) for columns in layouts)})"
            )
        if layout == UNPAIRED:
            yield from self._completions(rows, where)
        elif self.unpaired:
            for pair in self.pairs(rows, where):
                yield {"prompt": pair["prompt"], "completion": pair["chosen"], "label": True}
                yield {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False}
        else:
            yield from self.pairs(rows, where)

    def _completions(self, rows: Dataset, where: str) -> Iterator[dict[str, Any]]:
        """Each row as conversational prompt / completion with a boolean label, checked."""
        for number, row in enumerate(rows, 1):
            at = f"{where} row {number}"
            prompt = self.prompt_turns(row["prompt"], at)
            completion = as_turns(row["completion"], "assistant", f"{at}, completion")
            label = row["label"]
            if not isinstance(label, bool):
                got = "missing" if label is None else repr(label)
                raise DataError(f"{at}: label is {got}; set true (a desirable completion) or false (an undesirable)")
            check_messages(prompt + completion, at)
            yield {"prompt": prompt, "completion": completion, "label": label}
