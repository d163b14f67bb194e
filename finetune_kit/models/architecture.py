"""A new model from an architecture config (pretraining from scratch), sized by the recipe and
wired to the tokenizer trained for it."""

from __future__ import annotations

import difflib
from typing import Any

from transformers import AutoConfig, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from finetune_kit.config.recipe import ArchitectureConfig, ModelConfig
from finetune_kit.errors import ModelError, RecipeError, first_line
from finetune_kit.models.checkpoints import resolve_checkpoint


def build_from_architecture(
    model_class: Any, architecture: ArchitectureConfig, tokenizer: PreTrainedTokenizerBase, **head: Any
) -> PreTrainedModel:
    """`AutoConfig.for_model` + the task's Auto class `from_config`: random weights, the
    tokenizer's vocabulary size and special-token ids, the task head's sizes (`head`)."""
    config = _config(architecture, tokenizer, head)
    try:
        return model_class.from_config(config)
    except ValueError as err:
        raise RecipeError(
            f"model.architecture.model_type: a {architecture.model_type} model cannot do this task "
            f"({first_line(err, 120)}); pick a model type made for it"
        ) from None


def build_from_checkpoint_config(model_class: Any, model: ModelConfig, **head: Any) -> PreTrainedModel:
    """A checkpoint's architecture with fresh random weights: the control for "does pretraining help"."""
    source = resolve_checkpoint(model.checkpoint)
    try:
        config = AutoConfig.from_pretrained(source, revision=model.revision, **head)
    except (OSError, ValueError) as err:
        raise ModelError(
            f"model.checkpoint: cannot read the config of '{model.checkpoint}': {first_line(err)}"
        ) from None
    return model_class.from_config(config)


def _config(architecture: ArchitectureConfig, tokenizer: PreTrainedTokenizerBase, head: dict) -> PretrainedConfig:
    model_type = architecture.model_type
    if model_type not in CONFIG_MAPPING:
        close = difflib.get_close_matches(model_type, list(CONFIG_MAPPING.keys()), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "e.g. gpt2, llama, t5, bart, marian, bert"
        raise RecipeError(f"model.architecture.model_type: unknown model type '{model_type}'; {hint}")
    sizes = dict(architecture.model_extra or {})
    defaults = AutoConfig.for_model(model_type)
    for field in sizes:
        if not hasattr(defaults, field):  # also accepts aliases such as hidden_size for gpt2's n_embd
            close = difflib.get_close_matches(field, list(defaults.to_dict()), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see the model type's config class"
            raise RecipeError(f"model.architecture.{field}: not a {model_type} config field; {hint}")
    ids = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    config = AutoConfig.for_model(model_type, **{**ids, **head, **sizes})
    if config.is_encoder_decoder:
        config.decoder_start_token_id = tokenizer.pad_token_id
        for name in ("forced_eos_token_id", "forced_bos_token_id"):  # defaults point into another vocabulary
            if hasattr(config, name):
                setattr(config, name, None)
        if hasattr(config, "decoder_vocab_size"):
            config.decoder_vocab_size = len(tokenizer)
    return config
