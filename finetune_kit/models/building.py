"""The model a run trains, and the model a finished run folder holds, for any task's head."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peft import PeftModel, prepare_model_for_kbit_training
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.config.recipe import ModelConfig, Recipe
from finetune_kit.models.adapters import (
    attach_adapter,
    is_adapter,
    load_adapter_model,
    load_merged_adapter_run,
    new_module_names,
)
from finetune_kit.models.architecture import build_from_architecture, build_from_checkpoint_config
from finetune_kit.models.checkpoints import load_pretrained_model, resolve_checkpoint
from finetune_kit.models.gguf import is_gguf, load_gguf_model
from finetune_kit.models.head import ModelHead
from finetune_kit.models.quantization import (
    Quantization,
    quantized_loading,
    require_qlora_runtime,
    restore_unquantized_layers,
)


def build_model(recipe: Recipe, head: ModelHead, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel | PeftModel:
    """The recipe's checkpoint (or a new model of its architecture) with the task's head, wrapped
    in the recipe's adapter when it has a `peft` section."""
    quantization = recipe.peft.quantization if recipe.peft else None
    require_qlora_runtime(quantization)
    if recipe.model.architecture is not None:
        model = build_from_architecture(head.auto_class, recipe.model.architecture, tokenizer, **head.config)
        missing = {name for name, _ in model.named_parameters()}
    elif quantization:  # peft's section is refused with random weights: these are pretrained
        model, missing = _load_quantized(head, recipe.model, quantization)
    elif is_adapter(Path(recipe.model.checkpoint)):
        model, missing = load_merged_adapter_run(head.auto_class, Path(recipe.model.checkpoint)), set()
    elif recipe.model.random_init:
        model = build_from_checkpoint_config(head.auto_class, recipe.model, **head.config)
        missing = {name for name, _ in model.named_parameters()}
    else:
        model, missing = load_pretrained_model(head.auto_class, recipe.model, **head.config)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))  # tokens the task added (a chat template's markers)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id  # heads that pool the last real token need it
    if recipe.peft is None:
        return model
    new_modules = new_module_names(model, missing)
    return attach_adapter(model, recipe.peft, head.peft_task_type, new_modules, tokenizer)


def _load_quantized(
    head: ModelHead, model: ModelConfig, quantization: Quantization
) -> tuple[PreTrainedModel, set[str]]:
    """QLoRA's base: bitsandbytes quantizes plain weights as `from_pretrained` reads them, then
    peft readies the model for k-bit training (frozen, norms in fp32)."""
    with _plain_weights(head, model) as plain:
        loading = {**head.config, **quantized_loading(quantization)}
        loaded, missing = load_pretrained_model(head.auto_class, plain, **loading)
    if plain.checkpoint != model.checkpoint:
        loaded.config.name_or_path = ""  # not the temporary folder (gone now), as for a GGUF model
    restore_unquantized_layers(loaded)
    return prepare_model_for_kbit_training(loaded, use_gradient_checkpointing=False), missing


@contextmanager
def _plain_weights(head: ModelHead, model: ModelConfig) -> Iterator[ModelConfig]:
    """`model`, or, when its weights are not plain tensors on disk (a GGUF file is quantized its own
    way; an adapter run is a base plus an update), the same weights dequantized or merged and saved to
    a temporary folder for as long as the quantized model takes to load."""
    source = Path(resolve_checkpoint(model.checkpoint))
    if is_adapter(source):
        weights = load_merged_adapter_run(head.auto_class, source)
    elif is_gguf(source):
        weights = load_gguf_model(head.auto_class, source, **head.config)
    else:
        yield model
        return
    with tempfile.TemporaryDirectory(prefix="finetune-kit-plain-weights-") as folder:
        weights.save_pretrained(folder)
        del weights  # the quantized copy is loaded next: one full-precision copy in memory at a time
        yield model.model_copy(update={"checkpoint": folder, "revision": None})


def load_trained(head: ModelHead, model_dir: Path) -> PreTrainedModel | PeftModel:
    """A model a run trained: a full checkpoint, or its base with the run's adapter on top."""
    if is_adapter(model_dir):
        return load_adapter_model(head.auto_class, model_dir)
    return head.auto_class.from_pretrained(str(model_dir))
