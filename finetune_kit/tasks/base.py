"""What a task is: the only place that knows about labels, tokenization, heads and metrics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from datasets import Dataset, DatasetDict
from peft import PeftModel
from transformers import (
    EvalPrediction,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from finetune_kit.config.recipe import Recipe
from finetune_kit.data import require_columns
from finetune_kit.errors import DataError
from finetune_kit.models import load_pretrained_model
from finetune_kit.models.adapters import attach_adapter, is_adapter, load_adapter_model, new_module_names
from finetune_kit.models.architecture import build_from_architecture, build_from_checkpoint_config


class Task(ABC):
    """One fine-tuning task. The runner calls these hooks in order and knows no task by name.

    Lifecycle: `inspect` (check + learn from raw data) → `build_model` → `preprocess` →
    `collator` / `compute_metrics` during training → `predict` at inference time.
    """

    name: ClassVar[str]
    recipe_class: ClassVar[type[Recipe]]
    model_class: ClassVar[Any]  # a transformers Auto class, e.g. AutoModelForSequenceClassification
    pipeline_tag: ClassVar[str]
    main_metric: ClassVar[str]
    greater_is_better: ClassVar[bool] = True
    trainer_class: ClassVar[type[Trainer]] = Trainer
    arguments_class: ClassVar[type[TrainingArguments]] = TrainingArguments
    evaluate_before_training: ClassVar[bool] = False  # record the starting point (e.g. perplexity before)
    remove_unused_columns: ClassVar[bool] = True  # False when the collator consumes extra columns
    peft_task_type: ClassVar[str | None] = None  # peft's TaskType for this head (SEQ_CLS, ...), None: plain

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    @abstractmethod
    def inspect(self, data: DatasetDict) -> None:
        """Raise DataError on data that does not fit; record what the model head needs (labels)."""

    @abstractmethod
    def inspect_eval(self, rows: Dataset, where: str) -> None:
        """Check extra evaluation data against what the trained model knows; `where` names it in errors."""

    def head_kwargs(self) -> dict[str, Any]:
        """Keyword arguments sizing the task head (labels), learned by `inspect`."""
        return {}

    def build_model(self, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel | PeftModel:
        """The model to train: the recipe's checkpoint (or a new model of its architecture) with
        this task's head, wrapped in the recipe's adapter when it has a `peft` section."""
        architecture = self.recipe.model.architecture
        if architecture is not None:
            model = build_from_architecture(self.model_class, architecture, tokenizer, **self.head_kwargs())
            missing = {name for name, _ in model.named_parameters()}
        elif self.recipe.model.random_init:
            model = build_from_checkpoint_config(self.model_class, self.recipe.model, **self.head_kwargs())
            missing = {name for name, _ in model.named_parameters()}
        else:
            model, missing = load_pretrained_model(self.model_class, self.recipe.model, **self.head_kwargs())
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id  # heads that pool the last real token need it
        if self.recipe.peft is None:
            return model
        new_modules = new_module_names(model, missing)
        return attach_adapter(model, self.recipe.peft, self.peft_task_type, new_modules, tokenizer)

    def load_trained(self, model_dir: Path) -> PreTrainedModel | PeftModel:
        """A model this task trained (full, or base + adapter), with what `inspect` learned
        restored from its config."""
        if is_adapter(model_dir):
            model = load_adapter_model(self.model_class, model_dir)
        else:
            model = self.model_class.from_pretrained(str(model_dir))
        self.adopt_trained_config(model.config)
        return model

    def adopt_trained_config(self, config: PretrainedConfig) -> None:
        """Restore what `inspect` learned from a trained model's config."""
        del config  # tasks that learn nothing from the data have nothing to restore

    def training_arguments(self) -> dict[str, Any]:
        """Task-specific TrainingArguments (generation settings for seq2seq evaluation)."""
        return {}

    def evaluate_split(self, trainer: Trainer, features: Dataset, split: str) -> dict[str, float]:
        """Final metrics on one split, keys prefixed by the split's name."""
        return trainer.evaluate(features, metric_key_prefix=split)

    @abstractmethod
    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        """Tokenize into model inputs. Must keep a `length` column for length-grouped batching."""

    @abstractmethod
    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Any:
        """Pads each batch dynamically."""

    def logits_for_metrics(self, logits: Any, labels: Any) -> Any:
        """Shrink each evaluation batch's logits to what `compute_metrics` needs (memory)."""
        del labels
        return logits

    @abstractmethod
    def compute_metrics(self, prediction: EvalPrediction) -> dict[str, float]:
        """Scalar metrics, including `main_metric`; per-class scores as `<metric>_<class>`."""

    @abstractmethod
    def predict(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        """One JSON-ready result per input row, in the task's natural output form."""

    @abstractmethod
    def input_columns(self) -> list[str]:
        """Columns `predict` reads from an input file."""

    def training_callbacks(self, write_log: Callable[[dict[str, Any]], None]) -> list[TrainerCallback]:
        """Extra Trainer callbacks; `write_log` appends one entry to the run's JSON-lines log."""
        del write_log
        return []

    def final_results(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        """Results beyond metrics for metrics.json and the card (e.g. sample generations)."""
        del model, tokenizer
        return {}

    def tokenizer_texts(self, rows: Dataset) -> Iterator[str]:
        """The texts a new tokenizer learns its vocabulary from: every column the model reads."""
        for column in self.input_columns():
            yield from (_as_text(value) for value in rows[column])

    def card_facts(self) -> dict[str, Any]:
        """Task facts worth a line in the model card (labels, ...)."""
        return {}


class LabelledHead:
    """For tasks whose head picks one of `labels` (classification, NER): size the head from the
    labels `inspect` found, and read the names back from a trained model's config."""

    labels: list[str]

    def head_kwargs(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": {name: i for i, name in enumerate(self.labels)},
        }

    def adopt_trained_config(self, config: PretrainedConfig) -> None:
        self.labels = [config.id2label[i] for i in range(len(config.id2label))]


class RawTextColumn:
    """For tasks that learn from one column of raw text (masked and causal LM): the column must
    exist in every split and hold some text (strings, or word lists such as a NER tokens column)."""

    recipe: Recipe

    def inspect(self, data: DatasetDict) -> None:
        require_columns(data, {"data.text_column": self.recipe.data.text_column})
        for split_name, split in data.items():
            self.inspect_eval(split, f"data.{split_name}")

    def inspect_eval(self, rows: Dataset, where: str) -> None:
        column = self.recipe.data.text_column
        require_columns(DatasetDict(eval=rows), {"text_column": column})
        if not any(_as_text(value).strip() for value in rows[column]):
            raise DataError(f"{where}: no non-empty text in column '{column}'")

    def input_columns(self) -> list[str]:
        return [self.recipe.data.text_column]


def _as_text(value: Any) -> str:
    """A text cell, or a word list (a NER tokens column) joined by spaces."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value or "")
