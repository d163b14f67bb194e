"""The recipe's `peft` section and each task family's adapter defaults: what an adapter run trains
with where its recipe leaves a value unset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from finetune_kit.config.section import Section

PeftMethod = Literal["lora", "ia3", "loha", "lokr", "prompt_tuning", "prefix_tuning"]

# Which peft options each method reads: setting one the method ignores is an error, not a no-op.
PEFT_OPTION_METHODS: dict[str, tuple[str, ...]] = {
    "r": ("lora", "loha", "lokr"),
    "alpha": ("lora", "loha", "lokr"),
    "dropout": ("lora",),
    "use_rslora": ("lora",),
    "use_dora": ("lora",),
    "target_modules": ("lora", "ia3", "loha", "lokr"),
    "num_virtual_tokens": ("prompt_tuning", "prefix_tuning"),
    "init_text": ("prompt_tuning",),
    "quantization": ("lora", "loha", "lokr", "ia3"),
}


class PeftSection(Section):
    """Train a small adapter instead of every weight; the run folder keeps the adapter only."""

    method: PeftMethod = "lora"
    r: PositiveInt | None = Field(None, description="Rank of the low-rank update; unset: the task family's default")
    alpha: float | None = Field(
        None, gt=0, description="Scale of the update (alpha / r, or alpha / sqrt(r) with rsLoRA); unset: the family's"
    )
    dropout: float = Field(0.05, ge=0, lt=1)
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha / sqrt(r)")
    use_dora: bool = Field(False, description="DoRA: learn magnitude and direction separately")
    target_modules: Literal["auto", "all-linear"] | list[str] | None = Field(
        None,
        description="auto: peft's choice for the architecture (e.g. query/value), else all linear layers; "
        "unset: the task family's default (IA3: auto)",
    )
    modules_to_save: list[str] = Field(
        default_factory=list,
        description="Extra modules trained in full; the task head always is; unset: the family's (seq2seq: lm_head)",
    )
    quantization: Literal["4bit", "8bit"] | None = Field(
        None, description="QLoRA: the base model in 4-bit NF4 (or 8-bit) with bitsandbytes; CUDA only"
    )
    num_virtual_tokens: PositiveInt = Field(20, description="Learned tokens prepended to every input")
    init_text: str | None = Field(None, description="Initialise prompt tuning from this text's embeddings")

    @model_validator(mode="after")
    def _options_fit_method(self) -> PeftSection:
        for option in sorted(self.model_fields_set & PEFT_OPTION_METHODS.keys()):
            default = type(self).model_fields[option].get_default(call_default_factory=True)
            if self.method not in PEFT_OPTION_METHODS[option] and getattr(self, option) != default:
                users = ", ".join(PEFT_OPTION_METHODS[option])
                raise ValueError(f"{option} applies to {users}, not to method '{self.method}'")
        return self


@dataclass(frozen=True)
class AdapterDefaults:
    """What an adapter run trains with where its recipe leaves the value unset. Alpha follows the
    rank (alpha = alpha_per_rank x r), so a recipe that sets only `r` keeps the update's scale."""

    target_modules: str | list[str]
    r: int
    alpha_per_rank: float
    learning_rate: float
    modules_to_save: tuple[str, ...] = ()  # trained in full beside the low-rank update


# Per task family, keyed by the task's peft TaskType name (None: masked LM, which peft has no type for;
# denoising pretraining is seq2seq). An adapter starts as a zero update and trains a few percent of
# the weights, so it needs a far higher learning rate than full fine-tuning's 5e-5: at 5e-4 with
# query/value targets, MiniLM on 1,500 CoNLL sentences tagged every token O (F1 0.000).
# Seq2seq also trains its output layer in full: a low-rank update there lowered the loss but not
# ROUGE-L, and all-linear LoRA alone stayed 4 to 6 points below full fine-tuning on DialogSum.
# Measured by bench/lora_families.py.
FAMILY_DEFAULTS: dict[str | None, AdapterDefaults] = {
    "SEQ_CLS": AdapterDefaults("all-linear", r=8, alpha_per_rank=2, learning_rate=1e-3),
    "TOKEN_CLS": AdapterDefaults("all-linear", r=16, alpha_per_rank=2, learning_rate=3e-3),
    "CAUSAL_LM": AdapterDefaults("all-linear", r=16, alpha_per_rank=2, learning_rate=2e-3),
    "SEQ_2_SEQ_LM": AdapterDefaults(
        "all-linear", r=16, alpha_per_rank=2, learning_rate=2e-3, modules_to_save=("lm_head",)
    ),
    None: AdapterDefaults("all-linear", r=8, alpha_per_rank=2, learning_rate=1e-3),
}


def family_defaults(task_type: str | None) -> AdapterDefaults:
    return FAMILY_DEFAULTS[task_type]


def with_family_defaults(section: PeftSection, task_type: str | None) -> PeftSection:
    """`section` with the rank, alpha and targets it leaves unset taken from the task family, for
    the methods that read them. IA3 keeps peft's targets for the architecture: the family's are
    chosen for low-rank updates."""
    defaults = family_defaults(task_type)
    r = section.r or defaults.r
    low_rank = section.method in PEFT_OPTION_METHODS["r"]
    family = {
        "r": r,
        "alpha": float(defaults.alpha_per_rank * r),
        "target_modules": defaults.target_modules if low_rank else "auto",
    }
    unset = {
        option: value
        for option, value in family.items()
        if getattr(section, option) is None and section.method in PEFT_OPTION_METHODS[option]
    }
    if low_rank and defaults.modules_to_save and "modules_to_save" not in section.model_fields_set:
        adapted = unset.get("target_modules", section.target_modules)
        adapted = adapted if isinstance(adapted, list) else []
        unset["modules_to_save"] = [m for m in defaults.modules_to_save if m not in adapted]  # not both
    return section.model_copy(update=unset)
