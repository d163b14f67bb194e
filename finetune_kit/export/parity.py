"""Does an exported graph predict what PyTorch predicts? Both engines run on the same validation
rows. A task predicting from logits (`LogitsCheck`): their logits and labels are compared, and the
task's main metric is computed from each engine's logits. A task pooling one vector per text
(`VectorCheck`): each engine's vectors for the rows' texts, PyTorch's from the task's own `predict`,
compared value by value and by cosine similarity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from torch import nn
from transformers import EvalPrediction, PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.errors import ModelError
from finetune_kit.export.graph import PooledEncoder
from finetune_kit.inference import TorchRun
from finetune_kit.inference.onnx_run import EMBEDDING, LOGITS, OnnxLogits, PoolsTokenEmbeddings, embed_texts
from finetune_kit.tasks import Task
from finetune_kit.tasks.common import IGNORE_INDEX
from finetune_kit.tasks.logits import PREDICT_BATCH, LogitsOf, torch_logits

PARITY_ROWS = 200  # validation rows compared at export: enough to catch a wrong graph, quick on a CPU
FP32_TOLERANCE = 1e-3  # largest |logit difference| an fp32 graph may show; fp32 exports land near 1e-6
FP32_MIN_COSINE = 0.9999  # lowest cosine similarity of an fp32 graph's vector to PyTorch's; they land near 1 - 1e-7


@dataclass(frozen=True)
class Batch:
    """Tokenized rows padded as the task's collator pads them for evaluation, and their labels."""

    inputs: dict[str, torch.Tensor]
    labels: np.ndarray


def labelled_batches(
    task: Task, tokenizer: PreTrainedTokenizerBase, rows: Dataset, size: int = PREDICT_BATCH
) -> list[Batch]:
    """The rows through the task's own preprocessing and collator: the inputs training evaluated on."""
    features = task.preprocess(DatasetDict(validation=rows), tokenizer)["validation"].remove_columns("length")
    collate = task.collator(tokenizer)
    batches = []
    for start in range(0, len(features), size):
        collated = dict(collate(features.select(range(start, min(start + size, len(features)))).to_list()))
        labels = collated.pop("labels").numpy()
        batches.append(Batch(collated, labels))
    return batches


def logits_on(batches: list[Batch], logits_of: LogitsOf) -> list[np.ndarray]:
    return [logits_of(batch.inputs) for batch in batches]


@dataclass(frozen=True)
class Parity:
    """One engine against PyTorch on the same rows."""

    precision: str  # fp32, int8
    rows: int
    compared: int  # predicted labels compared: one per row (classification) or per word (NER)
    differing: int
    max_abs_diff: float  # over every real (not padding) position
    metric: str
    pytorch: float
    onnx: float

    @property
    def labels_identical(self) -> bool:
        return self.differing == 0

    @property
    def metric_delta(self) -> float:
        return self.onnx - self.pytorch

    def line(self) -> str:
        labels = (
            f"labels identical ({self.compared:,} of {self.compared:,})"
            if self.labels_identical
            else f"labels agree on {self.compared - self.differing:,} of {self.compared:,}"
        )
        return (
            f"{self.precision} vs PyTorch on {self.rows:,} validation rows: max |logit diff| {self.max_abs_diff:.2e}, "
            f"{labels}; {self.metric} {self.onnx:.4f} (PyTorch {self.pytorch:.4f}, {self.metric_delta:+.4f})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "max_abs_logit_diff": self.max_abs_diff,
            "labels_compared": self.compared,
            "labels_differing": self.differing,
            "labels_identical": self.labels_identical,
            "metric": self.metric,
            "pytorch": self.pytorch,
            "onnx": self.onnx,
            "metric_delta": self.metric_delta,
        }


def compare(
    task: Task,
    tokenizer: PreTrainedTokenizerBase,
    batches: list[Batch],
    reference: list[np.ndarray],
    candidate: list[np.ndarray],
    precision: str,
) -> Parity:
    """`candidate`'s logits against PyTorch's (`reference`), batch by batch."""
    max_diff, compared, differing = 0.0, 0, 0
    for batch, ours, theirs in zip(batches, reference, candidate, strict=True):
        real = batch.inputs["attention_mask"].numpy().astype(bool) if ours.ndim == 3 else slice(None)
        max_diff = max(max_diff, float(np.abs(ours - theirs)[real].max()))
        scored = batch.labels != IGNORE_INDEX  # the positions a prediction reads: rows, or words' first tokens
        compared += int(scored.sum())
        differing += int((ours.argmax(-1) != theirs.argmax(-1))[scored].sum())
    return Parity(
        precision,
        rows=sum(len(batch.labels) for batch in batches),
        compared=compared,
        differing=differing,
        max_abs_diff=max_diff,
        metric=task.main_metric,
        pytorch=_main_metric(task, tokenizer, batches, reference),
        onnx=_main_metric(task, tokenizer, batches, candidate),
    )


def require_fp32_parity(parity: Parity, run_dir: Path) -> None:
    """An fp32 graph computes what PyTorch computes, up to rounding; anything more is a wrong graph."""
    if parity.max_abs_diff > FP32_TOLERANCE or not parity.labels_identical:
        raise ModelError(
            f"{run_dir}: the ONNX graph does not match PyTorch on {parity.rows} validation rows "
            f"(max |logit diff| {parity.max_abs_diff:.2e}, tolerance {FP32_TOLERANCE:g}; "
            f"{parity.differing} of {parity.compared} labels differ): the exporter made a wrong graph for this "
            "model, so nothing was exported"
        )


def _main_metric(
    task: Task, tokenizer: PreTrainedTokenizerBase, batches: list[Batch], logits: list[np.ndarray]
) -> float:
    prediction = EvalPrediction(
        predictions=_stacked(logits, 0.0), label_ids=_stacked([batch.labels for batch in batches], IGNORE_INDEX)
    )
    return float(task.compute_metrics(prediction, tokenizer)[task.main_metric])


def _stacked(arrays: list[np.ndarray], pad: float) -> np.ndarray:
    """Batches padded to different lengths (NER), padded again to the longest and joined."""
    width = max(array.shape[1] for array in arrays) if arrays[0].ndim > 1 else 0
    return np.concatenate(
        [
            np.pad(array, [(0, 0), (0, width - array.shape[1])] + [(0, 0)] * (array.ndim - 2), constant_values=pad)
            if array.ndim > 1
            else array
            for array in arrays
        ]
    )


@dataclass(frozen=True)
class VectorParity:
    """One engine's vectors against PyTorch's for the same texts."""

    precision: str  # fp32, int8
    rows: int  # texts
    dimension: int
    max_abs_diff: float  # over every value of every vector
    mean_cosine: float  # cosine similarity of each text's vector to PyTorch's, over the texts
    min_cosine: float

    def line(self) -> str:
        return (
            f"{self.precision} vs PyTorch on {self.rows:,} validation texts: "
            f"max |vector diff| {self.max_abs_diff:.2e}, cosine to PyTorch's {self.dimension}-d vectors "
            f"mean {self.mean_cosine:.6f} (lowest {self.min_cosine:.6f})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "dimension": self.dimension,
            "max_abs_vector_diff": self.max_abs_diff,
            "mean_cosine": self.mean_cosine,
            "min_cosine": self.min_cosine,
        }


def compare_vectors(reference: np.ndarray, candidate: np.ndarray, precision: str) -> VectorParity:
    """`candidate`'s vectors against PyTorch's (`reference`), one row per text."""
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosines = (reference * candidate).sum(axis=1) / np.maximum(norms, 1e-12)
    return VectorParity(
        precision,
        rows=len(reference),
        dimension=reference.shape[1],
        max_abs_diff=float(np.abs(reference - candidate).max()),
        mean_cosine=float(cosines.mean()),
        min_cosine=float(cosines.min()),
    )


def texts_of(rows: Dataset, limit: int = PARITY_ROWS) -> list[str]:
    """The texts in the rows' text columns (anchors, positives, sentences, ...), row by row, each once."""
    columns = [name for name, feature in rows.features.items() if getattr(feature, "dtype", None) == "string"]
    texts = dict.fromkeys(text for row in rows.select_columns(columns) for text in row.values() if text)
    return list(texts)[:limit]


class ParityCheck(Protocol):
    """What an export checks its graphs with, per kind of task: the module to export around the model,
    PyTorch's outputs on the validation rows (computed once, before the export), and each graph's."""

    output: str  # the graph's output name
    criteria: dict[str, float]  # what an fp32 graph must meet, for export.json

    def exported(self, model: PreTrainedModel) -> nn.Module: ...

    def against(self, graph: Path, precision: str) -> Parity | VectorParity: ...

    def require_fp32(self, parity: Any, run_dir: Path) -> None: ...


def parity_check(run: TorchRun, rows: Dataset) -> ParityCheck:
    if isinstance(run.task, PoolsTokenEmbeddings):
        return VectorCheck(run, rows)
    return LogitsCheck(run, rows)


class LogitsCheck:
    """Classification, NER: the validation rows through the task's preprocessing and collator."""

    output = LOGITS
    criteria: ClassVar[dict[str, float]] = {"fp32_tolerance": FP32_TOLERANCE}

    def __init__(self, run: TorchRun, rows: Dataset) -> None:
        self.task, self.tokenizer = run.task, run.tokenizer
        self.batches = labelled_batches(run.task, run.tokenizer, rows)
        self.reference = logits_on(self.batches, torch_logits(run.model))  # before merging: what `predict` computes

    def exported(self, model: PreTrainedModel) -> nn.Module:
        return model

    def against(self, graph: Path, precision: str) -> Parity:
        candidate = logits_on(self.batches, OnnxLogits(graph))
        return compare(self.task, self.tokenizer, self.batches, self.reference, candidate, precision)

    def require_fp32(self, parity: Parity, run_dir: Path) -> None:
        require_fp32_parity(parity, run_dir)


class VectorCheck:
    """Embedding models: the texts of the validation rows, PyTorch's vectors from the task's `predict`
    (the run's whole pipeline), the graph's as `predict --backend onnx` computes them."""

    output = EMBEDDING
    criteria: ClassVar[dict[str, float]] = {"fp32_tolerance": FP32_TOLERANCE, "fp32_min_cosine": FP32_MIN_COSINE}

    def __init__(self, run: TorchRun, rows: Dataset) -> None:
        task = cast(PoolsTokenEmbeddings, run.task)
        (column,) = task.input_columns()
        self.texts = texts_of(rows)
        self.tokenizer, self.max_length = run.tokenizer, run.recipe.training.max_length
        predicted = run.predict(Dataset.from_dict({column: self.texts}))
        self.reference = np.array([row[EMBEDDING] for row in predicted], dtype=np.float32)
        self.pooling = task.pooling(run.model)

    def exported(self, model: PreTrainedModel) -> nn.Module:
        return PooledEncoder(model, self.pooling)

    def against(self, graph: Path, precision: str) -> VectorParity:
        candidate = embed_texts(OnnxLogits(graph), self.tokenizer, self.texts, self.max_length)
        return compare_vectors(self.reference, candidate, precision)

    def require_fp32(self, parity: VectorParity, run_dir: Path) -> None:
        if parity.max_abs_diff > FP32_TOLERANCE or parity.min_cosine < FP32_MIN_COSINE:
            raise ModelError(
                f"{run_dir}: the ONNX graph does not match PyTorch on {parity.rows} validation texts "
                f"(max |vector diff| {parity.max_abs_diff:.2e}, tolerance {FP32_TOLERANCE:g}; lowest cosine "
                f"{parity.min_cosine:.6f}, at least {FP32_MIN_COSINE} required): the exporter made a wrong graph "
                "for this model, so nothing was exported"
            )
