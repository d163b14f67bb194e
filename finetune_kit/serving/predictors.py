"""Backends behind `/predict`: a predictor is any callable that turns a batch of rows (keyed by the
task's input columns) into one prediction per row, in the shape `finetune-kit predict` prints. The
server only batches rows and calls it: the PyTorch model and the run's ONNX export
(`finetune-kit export`, run by ONNX Runtime) are two engines behind the same function."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset

from finetune_kit import inference

if TYPE_CHECKING:
    from finetune_kit.export import OnnxRun

Predictor = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
PYTORCH = "pytorch"
ONNX_PRECISIONS = {"onnx": "fp32", "onnx-int8": "int8"}  # backend → the exported graph it runs


def load_for_backend(run_dir: Path, backend: str) -> inference.LoadedRun | OnnxRun:
    """The run with its PyTorch weights, or with its exported graph in their place (no weights loaded)."""
    if backend == PYTORCH:
        return inference.load_run(run_dir)
    from finetune_kit.export import load_onnx_run  # onnxruntime: only for the onnx backends

    return load_onnx_run(run_dir, ONNX_PRECISIONS[backend])


def predictor(run: inference.LoadedRun | OnnxRun) -> Predictor:
    """The task's predictions on the run's engine: exactly what `finetune-kit predict` runs."""

    def predict(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return inference.predict(run, Dataset.from_list(rows))

    return predict
