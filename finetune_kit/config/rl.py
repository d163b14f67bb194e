"""The recipes of learning from rewards: a reward model trained on preference pairs (`reward`), and
GRPO (`grpo`), which samples replies to prompts and reinforces those its reward functions score high."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from finetune_kit.config.chat import PreferenceData, SftData, TemplateSection
from finetune_kit.config.generation import HeldOutGeneration
from finetune_kit.config.recipe import Recipe
from finetune_kit.config.section import Section

BuiltinReward = Literal["label_match", "bleu", "chrf", "rougeL", "entity_f1", "format", "length"]
REFERENCE_REWARDS = ("label_match", "bleu", "chrf", "rougeL", "entity_f1")  # compare a reply with the row's reference
GrpoLoss = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"]
RewardScaling = Literal["group", "batch", "none"]


class RewardSpec(Section):
    """One reward and its weight: a built-in (`name`), a reward-model run (`run`) or a Python
    function (`function: file.py:name`) taking `prompts`, `completions` and the row's columns."""

    name: BuiltinReward | None = Field(
        None,
        description="label_match, bleu, chrf, rougeL, entity_f1 (against the row's reference, 0-1); "
        "format (1 when the reply matches `pattern`); length (minus the share of words past `max_words`)",
    )
    run: str | None = Field(None, description="Folder of a `task: reward` run: its score of each reply")
    function: str | None = Field(
        None, description="file.py:name, a function (prompts, completions, **columns) returning one number per reply"
    )
    weight: float = Field(1.0, description="Its share of the total reward (0 logs it without training on it)")
    pattern: str | None = Field(None, description="format: the regular expression a whole reply must match")
    max_words: PositiveInt | None = Field(None, description="length: replies longer than this lose reward")
    tasks: list[str] | None = Field(
        None,
        min_length=1,
        description="Score only rows whose task (the column generation.group_column names, `task`) is one of "
        "these (a mix of tasks, each with its own reward); other rows are skipped by this reward. Default: every row",
    )

    @model_validator(mode="after")
    def _one_source(self) -> RewardSpec:
        given = [key for key in ("name", "run", "function") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of name (a built-in reward), run (a reward model) or function")
        if self.function is not None and not re.fullmatch(r".+\.py:[A-Za-z_]\w*", self.function):
            raise ValueError(f"function '{self.function}': write it as file.py:function_name")
        for option, reward in (("pattern", "format"), ("max_words", "length")):
            if (getattr(self, option) is not None) != (self.name == reward):
                raise ValueError(f"{option} is the {reward} reward's setting, which needs it")
        if self.tasks is not None and self.run is not None:
            raise ValueError("tasks: a reward model (run) scores every row; give tasks to a name or function reward")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"pattern '{self.pattern}' is not a regular expression: {error}") from None
        return self

    @property
    def label(self) -> str:
        """The name the reward is logged under."""
        if self.name is not None:
            return self.name
        if self.function is not None:
            return self.function.rsplit(":", 1)[1]
        return f"reward_model:{self.run}"


class GrpoOptions(Section):
    """GRPO's settings: TRL's `GRPOConfig` fields of the same names, and the toolkit's `oversample`,
    `reference_guidance` and `stop_without_signal`."""

    rewards: list[RewardSpec] = Field(min_length=1, description="What a reply is scored by, with weights")
    num_generations: int = Field(8, ge=2, description="Replies sampled per prompt; rewards are compared among them")
    beta: float = Field(0.0, ge=0, description="KL weight to the starting model (0: no reference model kept)")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the replies")
    max_completion_length: PositiveInt = Field(64, description="Longest reply sampled, in tokens")
    loss_type: GrpoLoss = Field("dapo", description="grpo, dr_grpo, dapo (TRL's default), bnpo, cispo, sapo")
    scale_rewards: RewardScaling = Field(
        "group",
        description="Advantages divided by the reward spread of each group (TRL's default), of the whole batch "
        "(PPO Lite), or not at all (Dr. GRPO); group lifts even a group with one odd reply to unit spread",
    )
    oversample: PositiveInt = Field(
        1,
        description="Sample replies for this many times the prompts a step trains on, and train on the groups "
        "whose replies earned different rewards, up to training.batch_size replies (DAPO's dynamic sampling): "
        "the others have no advantage and, with beta 0, no gradient",
    )
    reference_guidance: bool = Field(
        False,
        description="Where none of a group's sampled replies is the row's reference reply, put the reference "
        "in place of the last one (off-policy guidance, as LUFFY): prompts the model answers wrong every time "
        "then teach it too. Every row needs a reference; not with use_vllm",
    )
    use_vllm: bool = Field(False, description="Generate with vLLM (needs a GPU and the vllm package)")
    disable_dropout: bool = Field(
        True,
        description="No dropout (LoRA's included): replies are sampled from the very policy that is scored "
        "and trained (TRL's default: false)",
    )
    stop_without_signal: PositiveInt | None = Field(
        3,
        description="With beta 0: stop once every group's replies earned equal rewards for this many logging "
        "windows in a row (no gradient is left); null: never",
    )

    @model_validator(mode="after")
    def _guidance_samples_here(self) -> GrpoOptions:
        if self.reference_guidance and self.use_vllm:
            raise ValueError("reference_guidance replaces replies this process samples: set use_vllm false")
        return self


class GrpoData(SftData):
    reference_column: str = Field(
        "reference", description="Set from each row's last assistant reply: what the reference rewards compare with"
    )


class GrpoRecipe(Recipe):
    peft_task_type: ClassVar[str | None] = "CAUSAL_LM"

    task: Literal["grpo"]
    data: GrpoData
    grpo: GrpoOptions
    chat: TemplateSection = Field(default_factory=TemplateSection)
    generation: HeldOutGeneration = Field(default_factory=HeldOutGeneration)

    @model_validator(mode="after")
    def _batches_hold_whole_groups(self) -> GrpoRecipe:
        rows = self.training.batch_size * self.training.gradient_accumulation_steps
        if rows % self.grpo.num_generations:
            raise ValueError(
                f"training.batch_size × gradient_accumulation_steps ({rows}) must be a multiple of "
                f"grpo.num_generations ({self.grpo.num_generations}): each prompt's replies are compared in one batch"
            )
        return self


class RewardRecipe(Recipe):
    peft_task_type: ClassVar[str | None] = "SEQ_CLS"

    task: Literal["reward"]
    data: PreferenceData
    chat: TemplateSection = Field(default_factory=TemplateSection)
