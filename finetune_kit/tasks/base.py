"""What a task is: the only place that knows about labels, tokenization, heads and metrics.

The interface is a small required core (`inspect` → `preprocess` → `collator` → `predict`);
everything else has a default, and optional capabilities are mixins (`LabelledHead`,
`RawTextColumn`, `SamplesDuringTraining`, `StreamedTraining`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from datasets import Dataset, DatasetDict, IterableDataset
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
from finetune_kit.data import Stream, require_columns
from finetune_kit.errors import DataError
from finetune_kit.models.head import ModelHead
from finetune_kit.progress import SILENT, Progress
from finetune_kit.tasks.common import as_text


@dataclass(frozen=True)
class TrainerSetup:
    """How a task's Trainer differs from the plain one (seq2seq tasks generate at evaluation)."""

    trainer_class: Callable[..., Trainer] = Trainer  # a Trainer class, or a function that builds one
    arguments_class: type[TrainingArguments] = TrainingArguments
    arguments: dict[str, Any] = field(default_factory=dict)
    remove_unused_columns: bool = True  # False when the collator consumes extra columns
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)  # constructor arguments of its own (GRPO's rewards)


class EndsTrainingEarly(TrainerCallback):
    """A task's callback that can end training before its plan: once it has, `stopped` (`reason`, `step`)
    says why in metrics.json, the summary and the card."""

    stopped: dict[str, Any] | None = None


class SplitNamedMetrics(Trainer):
    """TRL's trainers name the metrics they add to every evaluation `eval_...` (rewards, entropy);
    here they take the split's prefix (`validation_rewards/accuracies`), like the loss beside them."""

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval") -> dict:
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        rename = f"{metric_key_prefix}_"
        return {rename + key.removeprefix("eval_") if key.startswith("eval_") else key: v for key, v in metrics.items()}


class Task(ABC):
    """One fine-tuning task. The runner calls these hooks in order and knows no task by name."""

    name: ClassVar[str]
    pipeline_tag: ClassVar[str]
    library_name: ClassVar[str] = "transformers"  # the library the saved model loads with, for the Hub
    main_metric: ClassVar[str]
    greater_is_better: ClassVar[bool] = True
    evaluate_before_training: ClassVar[bool] = False  # record the starting point (e.g. perplexity before)
    sample_unit: ClassVar[str] = "samples"  # what the speed in samples/s counts, as the user names it
    # Tasks whose main metric moves in points of 0.01 report the grams CO2eq each point gained cost.
    grams_per_point: ClassVar[bool] = False

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    @abstractmethod
    def model_head(self) -> ModelHead:
        """The model class and head this task trains (sized by what `inspect` learned)."""

    @abstractmethod
    def inspect(self, data: DatasetDict) -> None:
        """Raise DataError on data that does not fit; learn what the model head needs (labels)."""

    @abstractmethod
    def inspect_eval(self, rows: Dataset, where: str) -> None:
        """Check extra evaluation data against what the trained model knows; `where` names it in errors."""

    def inspect_file_to_evaluate(self, rows: Dataset, where: str) -> None:
        """A labelled file that `eval` scores a finished run on: checked as a validation split is."""
        self.inspect_eval(rows, where)

    @abstractmethod
    def preprocess(self, data: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
        """Tokenize into model inputs. Must keep a `length` column for length-grouped batching."""

    @abstractmethod
    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable[[list[dict]], dict[str, Any]] | None:
        """Pads each batch dynamically; None: the task's Trainer class brings its own."""

    @abstractmethod
    def predict(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        """One JSON-ready result per input row, in the task's natural output form."""

    @abstractmethod
    def input_columns(self) -> list[str]:
        """Columns `predict` reads from an input file."""

    # -- optional, with defaults -----------------------------------------------------------------
    def compute_metrics(self, prediction: EvalPrediction, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
        """Scalar metrics, including `main_metric`; per-class scores as `<metric>_<class>`. None by
        default: for a task whose Trainer class derives its metrics from the loss alone."""
        del prediction, tokenizer
        return {}

    def trainer_setup(self) -> TrainerSetup:
        return TrainerSetup()

    def logits_for_metrics(self, logits: Any, labels: Any) -> Any:
        """Shrink each evaluation batch's logits to what `compute_metrics` needs (memory)."""
        del labels
        return logits

    def adopt_trained_config(self, config: PretrainedConfig) -> None:
        """Restore what `inspect` learned from a trained model's config (nothing, by default)."""
        del config

    def tokenizer_texts(self, rows: Dataset) -> Iterator[str]:
        """The texts a new tokenizer learns its vocabulary from: every column the model reads."""
        for column in self.input_columns():
            yield from (as_text(value) for value in rows[column])

    def card_facts(self) -> dict[str, Any]:
        """Task facts worth a line in the model card (labels, ...)."""
        return {}

    def card_metadata(self) -> dict[str, Any]:
        """Extra fields of the card's metadata in the conventions of the task's library (`tags` to add, a Hub
        widget)."""
        return {}

    def examples_per_row(self, rows: Dataset) -> float:
        """How many of the user's examples one preprocessed training row holds (several when packed),
        so that the speed counts examples, not rows."""
        del rows
        return 1.0

    def prepare_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Fit the tokenizer to the task (a chat template), or refuse it: runs before anything is written."""
        del tokenizer


class SamplesDuringTraining(ABC):
    """A task whose model writes text: samples for fixed prompts go to the run log during
    training and to metrics.json and the card at the end."""

    @abstractmethod
    def training_callbacks(self, write_log: Callable[[dict[str, Any]], None]) -> list[TrainerCallback]:
        """Trainer callbacks; `write_log` appends one entry to the run's JSON-lines log."""

    @abstractmethod
    def final_results(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DatasetDict,
        progress: Progress = SILENT,
    ) -> dict[str, Any]:
        """Results beyond metrics for metrics.json and the card (sample generations, scores of
        generated answers); `data` holds the run's raw splits; `progress` shows the generation."""

    def results_before_training(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DatasetDict,
        progress: Progress = SILENT,
    ) -> dict[str, Any]:
        """The same results for the starting model, when they are worth comparing (none by default)."""
        del model, tokenizer, data, progress
        return {}


class StreamedTraining(ABC):
    """A task that trains from a stream (`data.streaming`): `inspect` sees the stream's first rows, and every row
    after them is checked and tokenized as training reads it. A task without it refuses a streamed recipe."""

    @abstractmethod
    def check_row(self, row: dict[str, Any], where: str, number: int) -> None:
        """Raise DataError, naming `where` and row `number`, on a row `inspect` would refuse."""

    @abstractmethod
    def stream_features(self, stream: Stream, tokenizer: PreTrainedTokenizerBase) -> IterableDataset:
        """`preprocess`'s model inputs from the stream's rows, each checked with `check_row`, made lazily."""


class ReplyScorer:
    """For tasks whose `predict` scores a reply to a prompt (reward models): served on `/score`."""


class Embedder:
    """For tasks whose `predict` gives each row's `text` its vector (`{"text", "embedding"}`): served on
    `/v1/embeddings` (OpenAI's Embeddings API) besides `/predict`."""


class LabelledHead:
    """For tasks whose head picks one of `labels` (classification, NER): size the head from the
    labels `inspect` found, and read the names back from a trained model's config."""

    labels: list[str]

    def label_config(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": {name: i for i, name in enumerate(self.labels)},
        }

    def adopt_trained_config(self, config: PretrainedConfig) -> None:
        self.labels = [config.id2label[i] for i in range(len(config.id2label))]

    def card_facts(self) -> dict[str, Any]:
        return {"labels": self.labels}


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
        if not any(as_text(value).strip() for value in rows[column]):
            raise DataError(f"{where}: no non-empty text in column '{column}'")

    def input_columns(self) -> list[str]:
        return [self.recipe.data.text_column]
