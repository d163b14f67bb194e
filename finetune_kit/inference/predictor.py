"""What `predict`, `serve` and `chat` need of a finished run, whichever engine computes: the PyTorch
model (torch_run.py) or the run's ONNX export run by ONNX Runtime (onnx_run.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from finetune_kit.config.recipe import Recipe
from finetune_kit.tasks import Task

PYTORCH, ONNX, ONNX_INT8 = "pytorch", "onnx", "onnx-int8"
ONNX_PRECISIONS = {ONNX: "fp32", ONNX_INT8: "int8"}  # backend → the exported graph it runs
BACKENDS = (PYTORCH, *ONNX_PRECISIONS)


class Predictor(Protocol):
    """A finished run opened on one backend: its recipe, task and tokenizer, and the task's
    predictions in the form `finetune-kit predict` prints, the same on every backend."""

    run_dir: Path
    recipe: Recipe
    task: Task
    tokenizer: PreTrainedTokenizerBase

    @property
    def backend(self) -> str:
        """The engine's name, as `--backend` spells it: pytorch, onnx, onnx-int8."""
        ...

    def predict(self, rows: Dataset) -> list[dict[str, Any]]:
        """One prediction per row; `rows` hold the task's input columns."""
        ...
