"""The ONNX Runtime backend: a finished run's export (`finetune-kit export`) in place of its PyTorch
model, for the `onnx` backends of `predict` and `serve`; and the engine the export's parity check
compares with PyTorch. onnxruntime (the `export` extra) is imported only when a graph is opened."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from finetune_kit.config.recipe import Recipe
from finetune_kit.errors import ModelError
from finetune_kit.inference.predictor import ONNX
from finetune_kit.inference.reading import read_run
from finetune_kit.runs import Layout
from finetune_kit.tasks import Task
from finetune_kit.tasks.logits import PredictsFromLogits

# The graphs an export folder holds, by precision, and the name of their one output.
GRAPHS = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
LOGITS = "logits"


class OnnxLogits:
    """An ONNX Runtime session as a logits function (finetune_kit/tasks/logits.py): the tokenizer's
    tensors in, the head's logits out."""

    def __init__(self, graph: Path) -> None:
        import onnxruntime  # the `export` extra

        self.session = onnxruntime.InferenceSession(str(graph), providers=onnxruntime.get_available_providers())
        self.inputs = [node.name for node in self.session.get_inputs()]

    def __call__(self, encoded: Mapping[str, torch.Tensor]) -> np.ndarray:
        return self.session.run([LOGITS], {name: encoded[name].cpu().numpy() for name in self.inputs})[0]


@dataclass
class OnnxRun:
    """A finished run's recipe and task with its exported graph in place of the PyTorch model."""

    run_dir: Path
    recipe: Recipe
    task: Task
    tokenizer: PreTrainedTokenizerBase
    logits_of: OnnxLogits
    precision: str

    @property
    def backend(self) -> str:
        return ONNX if self.precision == "fp32" else f"{ONNX}-{self.precision}"

    def predict(self, rows: Dataset) -> list[dict[str, Any]]:
        """The same results, in the same form, as the task's PyTorch `predict`."""
        task = cast(PredictsFromLogits, self.task)  # load_onnx_run checked it
        return task.predict_from_logits(self.logits_of, self.tokenizer, rows)


def require_exportable(run_dir: Path, recipe: Recipe, task: Task) -> None:
    """ONNX covers the tasks whose predictions are a function of one forward pass's logits."""
    if not isinstance(task, PredictsFromLogits):
        raise ModelError(
            f"{run_dir}: ONNX export covers classification and NER runs; this is a {recipe.task} run "
            "(use the PyTorch backend)"
        )


def load_onnx_run(run_dir: Path, precision: str) -> OnnxRun:
    """The run's export in `RUN/onnx/` (`finetune-kit export`'s default folder), without PyTorch weights."""
    files, recipe, task = read_run(run_dir)
    require_exportable(run_dir, recipe, task)
    folder = files.path(Layout.ONNX)
    graph = folder / GRAPHS[precision]
    if not graph.is_file():
        quantize = " --quantize int8" if precision == "int8" else ""
        raise ModelError(
            f"{run_dir}: not exported (no {folder / GRAPHS[precision]}); "
            f"run `finetune-kit export {run_dir} --format onnx{quantize}` first"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return OnnxRun(run_dir, recipe, task, tokenizer, OnnxLogits(graph), precision)
