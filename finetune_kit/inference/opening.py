"""The one way to open a finished run: on the PyTorch backend, or on its ONNX export."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, overload

from finetune_kit.errors import UserError
from finetune_kit.inference.onnx_run import load_onnx_run
from finetune_kit.inference.predictor import BACKENDS, ONNX_PRECISIONS, PYTORCH, Predictor
from finetune_kit.inference.torch_run import TorchRun, load_torch_run


@overload
def open_run(run_dir: Path, backend: Literal["pytorch"] = ...) -> TorchRun: ...
@overload
def open_run(run_dir: Path, backend: str) -> Predictor: ...
def open_run(run_dir: Path, backend: str = PYTORCH) -> Predictor:
    """The run with its PyTorch weights (the default: what generate, eval, merge and chat need),
    or with its exported graph in their place, no weights loaded (`onnx`, `onnx-int8`)."""
    if backend == PYTORCH:
        return load_torch_run(run_dir)
    if backend not in ONNX_PRECISIONS:
        raise UserError(f"backend {backend!r}: one of {', '.join(BACKENDS)}")
    return load_onnx_run(run_dir, ONNX_PRECISIONS[backend])
