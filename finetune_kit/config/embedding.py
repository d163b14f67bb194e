"""The embedding task's recipe (`task: embedding`): a sentence-transformers model trained on pairs,
triplets, scored pairs or labelled texts, and evaluated on retrieval or similarity before and after."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from finetune_kit.config.encoders import ClassificationData
from finetune_kit.config.recipe import DataConfig, Recipe
from finetune_kit.config.section import Section

EmbeddingLayout = Literal["auto", "pair", "triplet", "scored-pair", "labelled"]
EmbeddingLossName = Literal[
    "multiple_negatives_ranking",
    "cached_multiple_negatives_ranking",
    "cosent",
    "cosine",
    "triplet",
    "batch_all_triplet",
]


class RetrievalFiles(Section):
    """A retrieval evaluation: a corpus and the queries that point into it."""

    queries: str = Field(description="JSON lines: id, text, relevant (the ids of the corpus rows it should find)")
    corpus: str = Field(description="JSON lines: id, text")


class HardNegatives(Section):
    """Mine a negative for each (anchor, positive) pair from the training positives, with the starting model:
    a text similar to the anchor that is not its positive. Pairs become triplets."""

    count: PositiveInt = Field(1, description="Negatives per pair (each makes its own triplet)")
    range_min: int = Field(
        10, ge=0, description="Skip the N texts most similar to the anchor: the likeliest unlabelled positives"
    )
    margin: float = Field(0.0, ge=0, description="A negative scores at least this much below the positive")


class EmbeddingData(DataConfig):
    layout: EmbeddingLayout = Field(
        "auto",
        description="pair (anchor, positive), triplet (anchor, positive, negative), scored-pair "
        "(sentence1, sentence2, score in 0-1), labelled (text, label); auto: read off the column names",
    )
    columns: list[str] | None = Field(
        None, min_length=2, max_length=3, description="The layout's columns in its order, when named otherwise"
    )
    validation_retrieval: RetrievalFiles | None = Field(
        None, description="Retrieval evaluation during training; default: the validation pairs' anchors and positives"
    )
    test_retrieval: RetrievalFiles | None = Field(
        None, description="Retrieval evaluation at the end; default: the test pairs' anchors and positives"
    )
    hard_negatives: HardNegatives | None = Field(None, description="Mine negatives for (anchor, positive) pairs")

    @model_validator(mode="after")
    def _columns_need_a_layout(self) -> EmbeddingData:
        if self.columns is not None and self.layout == "auto":
            raise ValueError("columns: name the layout they are in as well (data.layout: pair, triplet, ...)")
        return self


class EmbeddingLoss(Section):
    name: EmbeddingLossName | None = Field(
        None,
        description="Unset: multiple_negatives_ranking for pairs and triplets, cosent for scored pairs, "
        "batch_all_triplet for labelled texts",
    )
    matryoshka_dims: list[PositiveInt] | None = Field(
        None, min_length=1, description="Also train these truncated sizes (Matryoshka), e.g. [384, 256, 128, 64]"
    )
    mini_batch_size: PositiveInt = Field(
        32, description="cached_multiple_negatives_ranking: rows per forward pass (memory), not the batch size"
    )


class EmbeddingRecipe(Recipe):
    peft_task_type: ClassVar[str | None] = None  # a plain PeftModel around the encoder

    task: Literal["embedding"]
    data: EmbeddingData
    loss: EmbeddingLoss = Field(default_factory=EmbeddingLoss)

    @model_validator(mode="after")
    def _starts_from_an_encoder(self) -> EmbeddingRecipe:
        if self.model.checkpoint is None:
            raise ValueError(
                "task embedding: start from a pretrained encoder (model.checkpoint); a new architecture has "
                "no sentence representation to fine-tune"
            )
        return self


class SetFitOptions(Section):
    """SetFit's two phases: the encoder learns from pairs of training texts (same label: similar), then a
    logistic-regression head learns the labels from its embeddings."""

    num_iterations: PositiveInt = Field(20, description="Pairs drawn per training text (SetFit's num_iterations)")
    sampling_strategy: Literal["oversampling", "undersampling", "unique"] = Field(
        "oversampling", description="How positive and negative pairs are balanced (SetFit's sampling_strategy)"
    )
    templated_examples: NonNegativeInt = Field(
        0,
        description="Training texts made per label from its name with `template` (SetFit's get_templated_dataset): "
        "with a few rows they tell the encoder what each label means; 0: none",
    )
    template: str = Field("This sentence is {}", description="A templated example's text; {} is the label's name")

    @model_validator(mode="after")
    def _template_names_the_label(self) -> SetFitOptions:
        if self.template.count("{}") != 1:
            raise ValueError(f"template: {self.template!r} needs one {{}} where the label's name goes")
        return self


class SetFitRecipe(Recipe):
    peft_task_type: ClassVar[str | None] = None

    task: Literal["setfit"]
    data: ClassificationData
    setfit: SetFitOptions = Field(default_factory=SetFitOptions)

    @model_validator(mode="after")
    def _single_texts(self) -> SetFitRecipe:
        if self.data.text_pair_column is not None:
            raise ValueError(
                "data.text_pair_column: SetFit classifies single texts; for pairs use task: classification"
            )
        if self.model.checkpoint is None:
            raise ValueError("task setfit: start from a pretrained sentence encoder (model.checkpoint)")
        if self.peft is not None:
            raise ValueError(
                "peft: SetFit fine-tunes the whole encoder on a few rows, then fits its head; remove the peft section"
            )
        return self
