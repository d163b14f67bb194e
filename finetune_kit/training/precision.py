"""Pick the numeric precision the hardware can run fast: bf16 autocast where supported, else fp32."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch

from finetune_kit.config.recipe import Precision

Resolved = Literal["fp32", "bf16", "fp16"]
DTYPES: dict[Resolved, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_supports_bf16() -> bool:
    """AVX512-BF16 or AMX: CPU bf16 matmuls are fast there, and slow emulations elsewhere."""
    # Private torch.cpu probes: torch has no public query for these CPU features.
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(requested: Precision) -> Resolved:
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def autocast(precision: Resolved, device: torch.device) -> AbstractContextManager:
    """The run's mixed precision for forward passes outside the Trainer's (the generation a task
    scores before and after training): they compute as training and evaluation did, at their speed."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
