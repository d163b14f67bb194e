"""The model a run trains, and the model a finished run folder holds, for any task's head."""

from __future__ import annotations

from pathlib import Path

from peft import PeftModel, prepare_model_for_kbit_training
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.config.recipe import Recipe
from finetune_kit.models.adapters import attach_adapter, is_adapter, load_adapter_model, merged_model, new_module_names
from finetune_kit.models.architecture import build_from_architecture, build_from_checkpoint_config
from finetune_kit.models.checkpoints import load_pretrained_model
from finetune_kit.models.quantization import quantized_loading, require_cuda
from finetune_kit.tasks.base import ModelHead


def build_model(recipe: Recipe, head: ModelHead, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel | PeftModel:
    """The recipe's checkpoint (or a new model of its architecture) with the task's head, wrapped
    in the recipe's adapter when it has a `peft` section."""
    quantization = recipe.peft.quantization if recipe.peft else None
    require_cuda(quantization)
    if recipe.model.architecture is not None:
        model = build_from_architecture(head.auto_class, recipe.model.architecture, tokenizer, **head.config)
        missing = {name for name, _ in model.named_parameters()}
    elif is_adapter(Path(recipe.model.checkpoint)):  # an adapter run (SFT before preference tuning): merged first
        checkpoint = Path(recipe.model.checkpoint)
        model, missing = merged_model(load_adapter_model(head.auto_class, checkpoint), checkpoint), set()
    elif recipe.model.random_init:
        model = build_from_checkpoint_config(head.auto_class, recipe.model, **head.config)
        missing = {name for name, _ in model.named_parameters()}
    else:
        model, missing = load_pretrained_model(
            head.auto_class, recipe.model, **head.config, **quantized_loading(quantization)
        )
        if quantization:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))  # tokens the task added (a chat template's markers)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id  # heads that pool the last real token need it
    if recipe.peft is None:
        return model
    new_modules = new_module_names(model, missing)
    return attach_adapter(model, recipe.peft, head.peft_task_type, new_modules, tokenizer)


def load_trained(head: ModelHead, model_dir: Path) -> PreTrainedModel | PeftModel:
    """A model a run trained: a full checkpoint, or its base with the run's adapter on top."""
    if is_adapter(model_dir):
        return load_adapter_model(head.auto_class, model_dir)
    return head.auto_class.from_pretrained(str(model_dir))
