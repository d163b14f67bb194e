"""The encoder tasks' recipes: classification, named-entity recognition (`ner`) and masked-LM adaptation."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from finetune_kit.config.recipe import DataConfig, Recipe


class ClassificationData(DataConfig):
    text_column: str = "text"
    text_pair_column: str | None = Field(None, description="Second text of a sentence pair (NLI, paraphrase)")
    label_column: str = "label"
    label_names: list[str] | None = Field(
        None, min_length=2, description="Names for integer labels 0..n-1, e.g. [negative, positive]"
    )
    shots_per_class: PositiveInt | None = Field(
        None, description="Few-shot: train on a seeded sample of this many rows of each label (balanced)"
    )

    @model_validator(mode="after")
    def _shots_need_every_row(self) -> ClassificationData:
        if self.streaming and self.shots_per_class is not None:
            raise ValueError("shots_per_class: a balanced sample needs the whole train split; remove it or streaming")
        return self


class ClassificationRecipe(Recipe):
    peft_task_type: ClassVar[str | None] = "SEQ_CLS"

    task: Literal["classification"]
    data: ClassificationData


class TokenClassificationData(DataConfig):
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    label_names: list[str] | None = Field(
        None, min_length=2, description="Tag names for integer tag ids (id order), and the full tag set"
    )
    label_all_subtokens: bool = Field(False, description="Label every sub-token, not only a word's first")


class NerRecipe(Recipe):
    peft_task_type: ClassVar[str | None] = "TOKEN_CLS"

    task: Literal["ner"]
    data: TokenClassificationData


class MaskedLmData(DataConfig):
    text_column: str = Field(
        "text", description="Raw text (text files give `text`, one line per row), or word lists, joined by spaces"
    )
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    whole_word_masking: bool = Field(False, description="Mask all sub-tokens of a chosen word together")
    line_by_line: bool = Field(False, description="One example per row; default: rows joined into max_length blocks")


class MaskedLmRecipe(Recipe):
    peft_task_type: ClassVar[str | None] = None  # peft has no task type for masked LM: a plain PeftModel

    task: Literal["masked-lm"]
    data: MaskedLmData
