"""The chat tasks' recipes: instruction tuning (`sft`) and preference tuning, with their chat template
and held-out generation sections."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from finetune_kit.config.generation import HeldOutGeneration
from finetune_kit.config.recipe import DataConfig, Recipe
from finetune_kit.config.section import Section

ConversationFormat = Literal["auto", "messages", "sharegpt", "prompt-completion", "alpaca"]
TrainOn = Literal["assistant", "all"]


class TemplateSection(Section):
    """The recipe's `chat` section: which template formats the conversations."""

    template: str | None = Field(
        None, description="Unset: the checkpoint's own; chatml (for a base model without one); or Jinja text"
    )


class SftData(DataConfig):
    conversation_format: ConversationFormat = Field(
        "auto",
        description="messages, sharegpt (conversations), prompt-completion, alpaca; auto: told by the columns",
    )
    system_prompt: str | None = Field(None, description="Put first in every conversation that has none")


class ChatSection(TemplateSection):
    train_on: TrainOn = Field("assistant", description="assistant: loss on the replies only; all: every token")
    packing: bool = Field(
        True, description="Several conversations per max_length row, each attending only to itself: no padding"
    )


class SftRecipe(Recipe):
    peft_task_type: ClassVar[str | None] = "CAUSAL_LM"

    task: Literal["sft"]
    data: SftData
    chat: ChatSection = Field(default_factory=ChatSection)
    generation: HeldOutGeneration = Field(default_factory=HeldOutGeneration)


PreferenceLoss = Literal["dpo", "ipo", "hinge", "robust", "orpo", "simpo", "cpo", "kto"]
UNPAIRED_LOSSES = ("kto",)  # learn from unpaired completions, with a KL baseline taken within the batch


# Which losses read each option (TRL's config field of the same name, but sft_weight): setting one a
# loss ignores is an error.
OPTION_LOSSES: dict[str, tuple[str, ...]] = {
    "sft_weight": ("dpo", "ipo", "hinge", "robust"),
    "label_smoothing": ("robust", "cpo", "simpo"),
    "desirable_weight": ("kto",),
    "undesirable_weight": ("kto",),
    "simpo_gamma": ("simpo",),
    "cpo_alpha": ("cpo", "simpo"),
}


class PreferenceOptions(Section):
    loss: PreferenceLoss = Field(
        "dpo",
        description="dpo, ipo, hinge, robust (DPO variants); orpo, simpo, cpo (no reference); kto (unpaired rows)",
    )
    beta: float = Field(
        0.1, gt=0, description="How far from the reference the policy may move (ORPO: odds-ratio weight)"
    )
    sft_weight: float = Field(
        0.0,
        ge=0,
        description="dpo, ipo, hinge, robust: weight of the chosen replies' language-model loss added to the "
        "preference loss (RPO); keeps the task answers from drifting while the rejected ones are pushed down",
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="robust, cpo, simpo: the share of pairs assumed flipped"
    )
    desirable_weight: float = Field(
        1.0, gt=0, description="kto: weight of the desirable completions' loss (raise it when they are fewer)"
    )
    undesirable_weight: float = Field(
        1.0, gt=0, description="kto: weight of the undesirable completions' loss (raise it when they are fewer)"
    )
    simpo_gamma: float = Field(0.5, ge=0, description="simpo: the reward margin the chosen reply must win by")
    cpo_alpha: float = Field(
        1.0, ge=0, description="cpo, simpo: weight of the chosen replies' language-model loss (0: SimPO as published)"
    )

    @model_validator(mode="after")
    def _options_fit_loss(self) -> PreferenceOptions:
        for option in sorted(self.model_fields_set & OPTION_LOSSES.keys()):
            default = type(self).model_fields[option].get_default()
            if self.loss not in OPTION_LOSSES[option] and getattr(self, option) != default:
                users = ", ".join(OPTION_LOSSES[option])
                raise ValueError(f"{option} applies to loss {users}, not to '{self.loss}'")
        return self

    def loss_options(self) -> dict[str, Any]:
        """The options this loss reads."""
        return {option: getattr(self, option) for option, losses in OPTION_LOSSES.items() if self.loss in losses}

    def trl_arguments(self, loss_arguments: dict[str, Any]) -> dict[str, Any]:
        """TRL config settings: the loss's own (LOSSES) and the options it reads. A positive
        sft_weight adds TRL's `sft` term (the chosen replies' negative log-likelihood) to the loss."""
        options = self.loss_options()
        sft_weight = options.pop("sft_weight", 0.0)
        arguments = loss_arguments | options
        if sft_weight:
            arguments |= {"loss_type": [*loss_arguments["loss_type"], "sft"], "loss_weights": [1.0, sft_weight]}
        return arguments


class PreferenceData(DataConfig):
    system_prompt: str | None = Field(None, description="Put first in every prompt that has none")


class PreferenceRecipe(Recipe):
    peft_task_type: ClassVar[str | None] = "CAUSAL_LM"

    task: Literal["preference"]
    data: PreferenceData
    preference: PreferenceOptions = Field(default_factory=PreferenceOptions)
    chat: TemplateSection = Field(default_factory=TemplateSection)
    generation: HeldOutGeneration = Field(default_factory=HeldOutGeneration)

    @model_validator(mode="after")
    def _unpaired_batches_hold_two_rows(self) -> PreferenceRecipe:
        if self.preference.loss in UNPAIRED_LOSSES and self.training.batch_size < 2:
            raise ValueError(
                f"preference.loss {self.preference.loss} needs training.batch_size 2 or more: its KL baseline "
                "scores each prompt with another row's completion from the same batch"
            )
        return self
