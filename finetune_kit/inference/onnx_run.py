"""The ONNX Runtime backend: a finished run's export (`finetune-kit export`) in place of its PyTorch
model, for the `onnx` backends of `predict` and `serve`; and the engine the export's parity check
compares with PyTorch. onnxruntime (the `export` extra) is imported only when a graph is opened.

Two kinds of task export, each known by what the task can do, never by its name: a task that
predicts from its head's logits (`PredictsFromLogits`: classification, NER) exports its model with
`logits` out; a task that pools an encoder's token embeddings into one vector per text
(`PoolsTokenEmbeddings`: embedding models) exports the encoder with its pooling, `embedding` out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

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
from finetune_kit.tasks.logits import PREDICT_BATCH, LogitsOf, PredictsFromLogits

# The graphs an export folder holds, by precision, and the name of their one output: a head's
# logits, or each text's vector.
GRAPHS = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
LOGITS, EMBEDDING = "logits", "embedding"

# The encoder's token embeddings (batch, sequence, width) and attention mask → one vector per row.
Pooling = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@runtime_checkable
class PoolsTokenEmbeddings(Protocol):
    """A task whose prediction for a text is one vector pooled from its encoder's token embeddings
    (embedding models). Its one input column holds the texts, its `predict` rows are
    `{<that column>: text, "embedding": vector}`, and its export is the encoder followed by `pooling`
    in one graph, the tokenizer's tensors in and `embedding` out."""

    def input_columns(self) -> list[str]: ...

    def pooling(self, model: Any) -> Pooling:
        """What the task's `predict` computes after `model` (the run's encoder, or its adapter model), as
        one function of the encoder's token embeddings and attention mask."""
        ...


class OnnxLogits:
    """An ONNX Runtime session as a logits function (finetune_kit/tasks/logits.py): the tokenizer's
    tensors in, the graph's one output (a head's logits, or each row's vector) out."""

    def __init__(self, graph: Path) -> None:
        import onnxruntime  # the `export` extra

        self.session = onnxruntime.InferenceSession(str(graph), providers=onnxruntime.get_available_providers())
        self.inputs = [node.name for node in self.session.get_inputs()]
        self.output = self.session.get_outputs()[0].name

    def __call__(self, encoded: Mapping[str, torch.Tensor]) -> np.ndarray:
        return self.session.run([self.output], {name: encoded[name].cpu().numpy() for name in self.inputs})[0]


def embed_texts(
    vectors_of: LogitsOf, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int
) -> np.ndarray:
    """Each text's vector from a graph whose output is one vector per row, tokenized as the sentence
    pipeline tokenizes (truncated to the run's `max_length`, padded per batch). Like its `encode`, texts
    of similar length share a batch (the longest first), so that short texts are not padded to long ones."""
    order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
    batches = [
        vectors_of(
            tokenizer(
                [texts[index] for index in order[start : start + PREDICT_BATCH]],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
        )
        for start in range(0, len(texts), PREDICT_BATCH)
    ]
    if not batches:
        return np.zeros((0, 0), dtype=np.float32)
    stacked = np.concatenate(batches)
    vectors = np.empty_like(stacked)
    vectors[order] = stacked  # back in the texts' order
    return vectors


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
        if isinstance(self.task, PoolsTokenEmbeddings):
            (column,) = self.task.input_columns()
            texts = list(rows[column])
            vectors = embed_texts(self.logits_of, self.tokenizer, texts, self.recipe.training.max_length)
            return [{column: text, EMBEDDING: vector.tolist()} for text, vector in zip(texts, vectors, strict=True)]
        task = cast(PredictsFromLogits, self.task)  # load_onnx_run checked it
        return task.predict_from_logits(self.logits_of, self.tokenizer, rows)


def require_exportable(run_dir: Path, recipe: Recipe, task: Task) -> None:
    """ONNX covers the tasks whose predictions are a function of one forward pass: of its logits, or
    of its encoder's token embeddings pooled into one vector per text."""
    if not isinstance(task, PredictsFromLogits | PoolsTokenEmbeddings):
        raise ModelError(
            f"{run_dir}: ONNX export covers classification, NER and embedding runs; this is a {recipe.task} run "
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
