"""Does an exported graph predict what PyTorch predicts? Both engines run on the same tokenized
validation rows: their logits and labels are compared, and the task's main metric is computed
from each engine's logits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import EvalPrediction, PreTrainedTokenizerBase

from finetune_kit.errors import ModelError
from finetune_kit.tasks import Task
from finetune_kit.tasks.common import IGNORE_INDEX
from finetune_kit.tasks.logits import PREDICT_BATCH, LogitsOf

PARITY_ROWS = 200  # validation rows compared at export: enough to catch a wrong graph, quick on a CPU
FP32_TOLERANCE = 1e-3  # largest |logit difference| an fp32 graph may show; fp32 exports land near 1e-6


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
