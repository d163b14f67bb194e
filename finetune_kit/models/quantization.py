"""QLoRA: the base model loaded in 4 or 8 bits with bitsandbytes, the adapter trained on top.
bitsandbytes' kernels need CUDA: elsewhere the recipe is refused before anything loads."""

from __future__ import annotations

from typing import Any, Literal

import torch

from finetune_kit.errors import RecipeError

Quantization = Literal["4bit", "8bit"]


def require_cuda(quantization: Quantization | None) -> None:
    if quantization is not None and not torch.cuda.is_available():
        raise RecipeError(
            f"peft.quantization: {quantization} (QLoRA) needs a CUDA GPU for bitsandbytes and this machine has none; "
            "remove peft.quantization to train the adapter on full-precision weights"
        )


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
