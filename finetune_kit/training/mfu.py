"""Model FLOPs utilization (MFU): how much of the machine's measured matmul peak training used.

Model FLOPs per real (non-padding) token, counted over the parameters (weights and biases) of
every layer that does a matmul (`nn.Linear`, and GPT-2's `Conv1D`; a tied output layer counts, an
embedding lookup does not: it multiplies nothing):

    flops_per_token = 6 × trainable matmul parameters + 4 × frozen matmul parameters

A trainable weight costs 2 FLOPs per token forward, 2 for the gradient of its input and 2 for its
own gradient (the usual 6N). A frozen weight (LoRA's base layers) skips its own gradient but the
backward pass still flows through it to reach the adapters below: 4. For full fine-tuning this is
exactly 6N. Not counted: attention scores (2 × 2 × sequence × width per token and layer, under 1%
of MiniLM's count at SST-2 lengths), padding, recomputation under gradient checkpointing (MFU,
not hardware FLOPs utilization). A task head that runs once per sequence is counted per token
(MiniLM's pooler and classifier: about 1% too high).

    MFU = real tokens/s × flops_per_token / (measured matmul peak × devices)

The peak is a short square-matmul benchmark in the run's precision on the training device,
measured once per process: a real, reachable figure for this machine, not a datasheet number.
"""

from __future__ import annotations

import time
from functools import cache

import torch
from transformers.pytorch_utils import Conv1D

from finetune_kit.training.precision import DTYPES

MATMUL_MODULES = (torch.nn.Linear, Conv1D)


def training_flops_per_token(model: torch.nn.Module) -> int:
    """Forward + backward model FLOPs per token: 6 per trainable matmul parameter (weight or
    bias), 4 per frozen one."""
    flops = 0
    for module in model.modules():
        if isinstance(module, MATMUL_MODULES):
            for parameter in module.parameters(recurse=False):
                flops += (6 if parameter.requires_grad else 4) * parameter.numel()
    return flops


@cache
def matmul_peak_flops(precision: str, device: str = "cpu", seconds: float = 0.3) -> float:
    """Best FLOP/s of square matmuls in `precision` on `device`, over two sizes (the fastest size
    differs between fp32 and bf16 kernels); about `seconds` long, cached per process."""
    sizes = (4096, 8192) if device.startswith("cuda") else (1024, 2048)
    return max(_best_matmul_flops(size, DTYPES[precision], device, seconds / len(sizes)) for size in sizes)


def _best_matmul_flops(size: int, dtype: torch.dtype, device: str, seconds: float, min_repeats: int = 2) -> float:
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    torch.mm(a, b)  # warm-up: kernel selection, first-touch allocations
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_repeats or time.perf_counter() < deadline:
        times.append(_timed_matmul(a, b))
    return 2 * size**3 / min(times)


def _timed_matmul(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.is_cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    torch.mm(a, b)
    if a.is_cuda:
        torch.cuda.synchronize()
    return max(time.perf_counter() - started, 1e-9)


def model_flops_utilization(
    model: torch.nn.Module, tokens_per_second: float, precision: str, devices: int = 1
) -> dict[str, float]:
    """MFU of a finished run: its real tokens/s (summed over `devices` processes, as the Trainer
    counts them) against `devices` × this machine's matmul peak in `precision` ("fp32", "bf16" or
    "fp16"; an autocast run is measured against its low-precision peak), on the model's device."""
    device = str(next(model.parameters()).device)
    return flops_utilization(training_flops_per_token(model), tokens_per_second, precision, device, devices)


def flops_utilization(
    flops_per_token: int, tokens_per_second: float, precision: str, device: str = "cpu", devices: int = 1
) -> dict[str, float]:
    """MFU from a FLOP count already known (e.g. the same architecture counted once)."""
    peak = matmul_peak_flops(precision, device) * devices
    achieved = tokens_per_second * flops_per_token
    return {
        "mfu": round(achieved / peak, 6),
        "model_tflops": round(achieved / 1e12, 6),
        "peak_tflops": round(peak / 1e12, 6),
    }
