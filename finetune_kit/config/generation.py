"""How generated texts are made and scored: the `generation` sections of the generative tasks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt

from finetune_kit.config.section import Section

GenerationMetric = Literal["accuracy", "bleu", "rougeL", "entity_f1"]


class GenerationSettings(Section):
    """How texts are generated for samples, `predict` and `generate`. temperature 0 is greedy."""

    max_new_tokens: PositiveInt = 64
    num_beams: PositiveInt = 1
    temperature: float = Field(0.0, ge=0, description="0: greedy (or beam search); above 0: sampling")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: PositiveInt | None = None
    seed: int = Field(0, description="Sampling seed: the same seed gives the same texts")

    def generate_kwargs(self) -> dict[str, Any]:
        sampling = self.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams}
        kwargs["do_sample"] = sampling
        if sampling:
            kwargs |= {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k or 0}
        return kwargs


class CausalLmGeneration(GenerationSettings):
    max_new_tokens: int = 100
    temperature: float = 0.8
    top_p: float = 0.95
    prompts: list[str] = Field(
        default_factory=lambda: [""], description="Sample prompts, logged after each evaluation; '' = from scratch"
    )


class HeldOutGeneration(GenerationSettings):
    """How data.test's conversations are answered and scored."""

    max_new_tokens: PositiveInt = 128
    metric: GenerationMetric | None = Field(None, description="One metric for every row; unset: metric_column")
    metric_column: str = Field("metric", description="Per row: accuracy, bleu, rougeL or entity_f1")
    group_column: str = Field("task", description="Rows scored together and reported as <group>_<metric>")
    batch_size: PositiveInt = 8
