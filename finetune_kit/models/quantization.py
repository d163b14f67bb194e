"""QLoRA: the base model loaded in 4 or 8 bits with bitsandbytes, the adapter trained on top.
bitsandbytes' kernels need CUDA: elsewhere the recipe is refused before anything loads."""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

import torch

from finetune_kit.errors import RecipeError, first_line

Quantization = Literal["4bit", "8bit"]


def require_qlora_runtime(quantization: Quantization | None) -> None:
    """Refuse QLoRA where it cannot run: without CUDA, or without bitsandbytes installed."""
    if quantization is None:
        return
    if not torch.cuda.is_available():
        raise RecipeError(
            f"peft.quantization: {quantization} (QLoRA) needs a CUDA GPU for bitsandbytes and this machine has none; "
            "remove peft.quantization to train the adapter on full-precision weights"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RecipeError(
            f"peft.quantization: {quantization} (QLoRA) needs bitsandbytes, which is not installed; "
            "run `pip install 'finetune-kit[qlora]'`"
        )
    _probe_quantization(quantization)


def _probe_quantization(quantization: Quantization) -> None:
    """Quantize a small matrix on the GPU first. A bitsandbytes build without kernels for this GPU or CUDA
    version fails inside transformers' loading otherwise, with the cause in a load report that the console
    shows only with --verbose."""
    import bitsandbytes as bnb

    try:
        matrix = torch.randn(64, 64, device=torch.device("cuda", torch.cuda.current_device()), dtype=torch.float16)
        if quantization == "4bit":
            bnb.functional.quantize_4bit(matrix, quant_type="nf4", compress_statistics=True)
        else:
            bnb.functional.int8_vectorwise_quant(matrix)
    except Exception as err:  # any failure means the same thing: this bitsandbytes cannot run here
        raise RecipeError(
            f"peft.quantization: {quantization} (QLoRA): bitsandbytes {bnb.__version__} cannot quantize on this GPU "
            f"({first_line(err)}); check its install with `python -m bitsandbytes`"
        ) from None


def quantized_loading(quantization: Quantization | None) -> dict[str, Any]:
    """`from_pretrained` arguments: NF4 with double quantization and bf16 compute (the QLoRA paper's
    setting), or LLM.int8()."""
    if quantization is None:
        return {}
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return {"quantization_config": config, "dtype": torch.bfloat16}


def restore_unquantized_layers(model: torch.nn.Module) -> None:
    """bitsandbytes swaps every linear layer for a quantized one before the weights load, and quantizes
    those the checkpoint holds. A layer it lacks (a new task head: a classifier, a tagger's output)
    keeps a freshly initialised full-precision weight inside a quantized layer, which neither peft nor
    bitsandbytes can run. It becomes a plain linear layer again: a new head trains in full anyway."""
    for name, layer in list(model.named_modules()):
        if _never_quantized(layer):
            plain = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
            plain.weight, plain.bias = layer.weight, layer.bias
            model.set_submodule(name, plain)


def _never_quantized(layer: torch.nn.Module) -> bool:
    import bitsandbytes as bnb

    if isinstance(layer, bnb.nn.Linear4bit):
        return not isinstance(layer.weight, bnb.nn.Params4bit)
    if isinstance(layer, bnb.nn.Linear8bitLt):
        return not isinstance(layer.weight, bnb.nn.Int8Params)
    return False
