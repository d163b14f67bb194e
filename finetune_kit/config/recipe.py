"""The typed recipe: the sections every task shares. Each task's recipe (`config/tasks/`) extends
`Recipe` and `DataConfig` with only the fields it adds."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, ConfigDict, Field, PositiveInt, field_validator, model_validator

from finetune_kit.config.peft import PeftSection, family_defaults, with_family_defaults
from finetune_kit.config.section import Section
from finetune_kit.config.sweep import SweepConfig

DataFormat = Literal["csv", "tsv", "json", "jsonl", "parquet", "text", "conll"]
# YAML reads a bare `no` as false: accept it as the "no" strategy it was meant to be.
Strategy = Annotated[Literal["epoch", "steps", "no"], BeforeValidator(lambda value: "no" if value is False else value)]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
FULL_FINE_TUNING_LEARNING_RATE = 5e-5
TRACKERS = ("tensorboard", "mlflow", "trackio")  # transformers' reporters the toolkit points into the run folder


def _tracker_list(value: object) -> object:
    """One tracker may be named alone (`report_to: tensorboard`); `none`, as transformers spells it, is none."""
    if value in (None, "none"):
        return []
    return [value] if isinstance(value, str) else value


Trackers = Annotated[list[str], BeforeValidator(_tracker_list)]


class HubDataSource(Section):
    """A dataset on the Hugging Face Hub, when the split or config must be named explicitly."""

    hub: str = Field(description="Dataset id, e.g. stanfordnlp/sst2")
    config: str | None = None
    split: str | None = Field(None, description="Defaults to the role: train, validation or test")
    revision: str | None = None


# A plain string is a local file (relative to the working directory, then to the recipe's folder)
# or, when no such file exists, a Hub dataset id whose split is the role (train/validation/test).
DataSource = str | HubDataSource


class ArchitectureConfig(Section):
    """A new, randomly initialised model: `model_type` plus any field of that type's config
    (n_layer, hidden_size, ...); unknown fields are refused when the model is built."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())
    model_type: str = Field(description="transformers model type: gpt2, llama, t5, bart, marian, bert, ...")


class ModelConfig(Section):
    checkpoint: str | None = Field(None, description="Hub model id or local folder (transfer learning)")
    architecture: ArchitectureConfig | None = Field(None, description="Build a new model instead (pretraining)")
    revision: str | None = None
    random_init: bool = Field(
        False,
        description="Take the checkpoint's architecture and tokenizer but not its weights: a from-scratch control",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.checkpoint is None) == (self.architecture is None):
            raise ValueError("give either checkpoint (a pretrained model) or architecture (a new one), not both")
        return self

    @property
    def description(self) -> str:
        if self.checkpoint is None:
            return f"new {self.architecture.model_type}"
        return f"{self.checkpoint} (random weights)" if self.random_init else self.checkpoint

    @property
    def weights_from(self) -> str | None:
        """The checkpoint whose weights the run starts from; None when it starts from random ones."""
        return None if self.random_init else self.checkpoint


class TokenizerConfig(Section):
    """Train a tokenizer on the recipe's training texts (with `model.architecture`)."""

    kind: Literal["bpe", "unigram", "wordpiece"] = Field(
        "bpe", description="bpe: byte-level (GPT-2 style); unigram: T5 / Marian style; wordpiece: BERT style"
    )
    vocab_size: PositiveInt = Field(8000, ge=100)
    min_frequency: PositiveInt = 2
    lowercase: bool = False


class DataConfig(Section):
    train: DataSource
    validation: DataSource | None = None
    test: DataSource | None = None
    format: DataFormat | None = Field(None, description="Defaults to the file extension")
    validation_fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of train held out (seeded) when no validation source is given"
    )
    max_train_rows: PositiveInt | None = Field(None, description="Cap for quick runs (seeded sample)")
    max_eval_rows: PositiveInt | None = Field(None, description="Cap on validation and test rows")
    streaming: bool = Field(
        False,
        description="Read data.train as a stream, checked and tokenized as training reads it: a corpus larger "
        "than memory or disk trains. Needs training.max_steps (a stream has no length); causal-lm, sft and "
        "classification",
    )


class TrainingConfig(Section):
    epochs: float = Field(3.0, gt=0)
    max_steps: PositiveInt | None = Field(None, description="Overrides epochs when set")
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt | None = None
    learning_rate: float | None = Field(
        None, gt=0, lt=1, description="Unset: 5e-5 for full fine-tuning, the task family's default for an adapter"
    )
    lr_scheduler: str = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    max_length: PositiveInt = Field(128, le=8192)
    seed: int = 42
    gradient_accumulation_steps: PositiveInt = 1
    eval_strategy: Strategy = "epoch"
    eval_steps: PositiveInt | None = None
    save_strategy: Strategy | None = Field(None, description="Defaults to eval_strategy")
    save_steps: PositiveInt | None = None
    logging_steps: PositiveInt = 10
    early_stopping_patience: PositiveInt | None = None
    group_by_length: bool = Field(
        True, description="Batch rows of similar length, batches in random order: far less padding"
    )
    precision: Precision = Field("auto", description="auto: bf16 where the hardware supports it, else fp32")
    gradient_checkpointing: bool = Field(False, description="Recompute activations: less memory, ~30% slower")
    torch_compile: bool = Field(
        False,
        description="torch.compile the model: faster steps after a compile pause, on a GPU; refused on a CPU, "
        "where the pause outweighs the gain",
    )
    dataloader_workers: int = Field(0, ge=0)
    report_to: Trackers = Field(
        default_factory=list,
        description="Experiment trackers (tensorboard, mlflow, trackio), offline in the run folder's tracking/: "
        "every logging step with grams CO2eq and kWh so far, the run's totals at the end",
    )
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; unset: MLFLOW_TRACKING_URI, else a SQLite file in the run folder"
    )

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in TRACKERS:
                close = difflib.get_close_matches(name, TRACKERS, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"choose from {', '.join(TRACKERS)}"
                raise ValueError(f"unknown tracker '{name}'; {hint}")
        return list(dict.fromkeys(names))  # each tracker once

    @model_validator(mode="after")
    def _steps_need_a_count(self) -> TrainingConfig:
        if self.eval_strategy == "steps" and self.eval_steps is None:
            raise ValueError("eval_strategy 'steps' needs training.eval_steps")
        if self.resolved_save_strategy == "steps" and (self.save_steps or self.eval_steps) is None:
            raise ValueError("save_strategy 'steps' needs training.save_steps")
        return self

    @property
    def resolved_save_strategy(self) -> Strategy:
        return self.save_strategy or self.eval_strategy


class EmissionsConfig(Section):
    enabled: bool = True
    country_iso_code: str | None = Field(
        None, min_length=3, max_length=3, description="ISO 3166 alpha-3, e.g. FRA; unset = world average"
    )
    region: str | None = None
    measure_power_secs: float = Field(15.0, gt=0)
    cpu_power_watts: float | None = Field(None, gt=0, description="Force the CPU power instead of estimating")
    carbon_intensity_g_per_kwh: float | None = Field(None, gt=0, description="Force the grid intensity")
    max_co2_g: float | None = Field(None, gt=0, description="Budget: stop training cleanly once reached")
    max_kwh: float | None = Field(None, gt=0, description="Budget: stop training cleanly once reached")


class CardConfig(Section):
    """Model-card metadata the data cannot tell: license, languages, Hub dataset ids, extra tags."""

    license: str | None = None
    language: list[str] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list, description="Hub dataset ids trained on")
    tags: list[str] = Field(default_factory=list)
    dataset_name: str | None = Field(None, description="Human name of the data, for model-index")


class HubConfig(Section):
    """Push the finished run to the Hub (token from HF_TOKEN or a saved login, never the recipe)."""

    repo_id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="namespace/name")
    private: bool = False
    revision: str | None = Field(None, description="Branch to push to; created when missing")
    commit_message: str | None = None


class Recipe(Section):
    """The sections every task shares; a task's recipe class adds its own and names its family."""

    # The peft TaskType name of the task's model (SEQ_CLS, CAUSAL_LM, ...; None: masked LM, which peft has
    # no type for): it picks the adapter defaults below and the PeftModel class.
    peft_task_type: ClassVar[str | None] = None

    task: str
    name: str | None = Field(None, description="Run name; defaults to the recipe file's name")
    model: ModelConfig
    tokenizer: TokenizerConfig | None = Field(None, description="Train a new tokenizer (needs model.architecture)")
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    emissions: EmissionsConfig = Field(default_factory=EmissionsConfig)
    card: CardConfig = Field(default_factory=CardConfig)
    peft: PeftSection | None = Field(None, description="Train an adapter (LoRA, IA3, ...) instead of all weights")
    hub: HubConfig | None = None
    sweep: SweepConfig | None = Field(None, description="`finetune-kit sweep`: fields to search; `train` ignores it")
    output_dir: Path | None = Field(None, description="Run folder; defaults to runs/<name>")

    @model_validator(mode="after")
    def _model_source_fits(self) -> Recipe:
        if self.model.architecture is not None and self.tokenizer is None:
            raise ValueError("a model.architecture needs a tokenizer section: a new model has no vocabulary yet")
        if self.model.checkpoint is not None and self.tokenizer is not None:
            raise ValueError("tokenizer: only with model.architecture; a checkpoint brings its own tokenizer")
        if self.peft is not None and self.model.weights_from is None:
            start = "model.architecture" if self.model.architecture is not None else "model.random_init"
            raise ValueError(
                f"peft: an adapter trains on top of pretrained weights and {start} starts from random ones; "
                "remove the peft section to train every weight"
            )
        return self

    @model_validator(mode="after")
    def _stream_has_an_end(self) -> Recipe:
        if self.data.streaming and self.training.max_steps is None:
            raise ValueError(
                "training.max_steps: required with data.streaming (a stream has no length to count epochs in); "
                "set it, e.g. --set training.max_steps=1000"
            )
        epochs = [name for name in ("eval_strategy", "save_strategy") if getattr(self.training, name) == "epoch"]
        if self.data.streaming and epochs:
            raise ValueError(
                f"training.{epochs[0]}: 'epoch' with data.streaming would wait for the end of the whole stream to "
                f"evaluate and save; use steps, e.g. --set training.{epochs[0]}=steps --set training.eval_steps=500"
            )
        return self

    @model_validator(mode="after")
    def _resolve_unset(self) -> Recipe:
        """The learning rate and adapter options left unset take their effective values here, once, from
        the task's family when it trains an adapter, so the recipe saved with a run shows what ran."""
        learning_rate = FULL_FINE_TUNING_LEARNING_RATE
        if self.peft is not None:
            self.peft = with_family_defaults(self.peft, self.peft_task_type)
            learning_rate = family_defaults(self.peft_task_type).learning_rate
        if self.training.learning_rate is None:
            self.training.learning_rate = learning_rate
        return self

    @property
    def run_dir(self) -> Path:
        return self.output_dir or Path("runs") / (self.name or "run")

    @property
    def training_type(self) -> Literal["fine-tuning", "pre-training"]:
        """How the Hub's co2_eq_emissions names this run's work."""
        return "fine-tuning" if self.model.weights_from else "pre-training"
