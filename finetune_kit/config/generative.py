"""The text-generating tasks' recipes: causal-LM pretraining, translation, summarization and denoising."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt

from finetune_kit.config.generation import CausalLmGeneration, GenerationSettings
from finetune_kit.config.recipe import DataConfig, DataSource, Recipe


class CausalLmData(DataConfig):
    text_column: str = Field(
        "text",
        description="Raw text. A row ending in a newline (a text file's line) runs on into the next; "
        "any other row is a document, ended by the end-of-text token",
    )
    packing: bool = Field(True, description="Join rows into max_length blocks; false: one row per example")


class CausalLmRecipe(Recipe):
    peft_task_type: ClassVar[str | None] = "CAUSAL_LM"

    task: Literal["causal-lm"]
    data: CausalLmData
    generation: CausalLmGeneration = Field(default_factory=CausalLmGeneration)


class Seq2SeqData(DataConfig):
    source_prefix: str = Field("", description="Put before every source, T5 style: 'translate English to German: '")
    max_target_length: PositiveInt = Field(128, description="Targets are cut here; sources at training.max_length")


class GeneratedTextRecipe(Recipe):
    """Recipes of the seq2seq tasks scored on generated text: outputs up to 128 new tokens by default."""

    peft_task_type: ClassVar[str | None] = "SEQ_2_SEQ_LM"

    generation: GenerationSettings = Field(default_factory=lambda: GenerationSettings(max_new_tokens=128))


class TranslationData(Seq2SeqData):
    source_lang: str = Field(description="Language code of the sources, e.g. en")
    target_lang: str = Field(description="Language code of the targets, e.g. de")
    translation_column: str = Field(
        "translation", description="Rows like {translation: {en: ..., de: ...}}; without it, one column per language"
    )


class TranslationRecipe(GeneratedTextRecipe):
    task: Literal["translation"]
    data: TranslationData


class SummarizationData(Seq2SeqData):
    text_column: str = Field("document", description="The text to summarize (DialogSum: dialogue)")
    summary_column: str = "summary"
    test_references: DataSource | None = Field(
        None, description="All references of the test rows: a file with an id column and a list column"
    )
    id_column: str = Field("id", description="Joins test rows to test_references")
    references_column: str = Field("summaries", description="List of reference summaries in test_references")


class SummarizationRecipe(GeneratedTextRecipe):
    task: Literal["summarization"]
    data: SummarizationData


class DenoisingData(Seq2SeqData):
    text_column: str = Field("text", description="Raw text to learn from (DialogSum: dialogue)")
    mask_ratio: float = Field(0.3, gt=0, lt=1, description="Share of words hidden (BART uses 0.3)")
    mean_span: float = Field(3.0, gt=0, description="Mean masked span length in words (Poisson)")


class DenoisingRecipe(Recipe):
    peft_task_type: ClassVar[str | None] = "SEQ_2_SEQ_LM"

    task: Literal["denoising"]
    data: DenoisingData
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
