"""Predictions made from a head's logits, whichever engine computes them.

Classification and NER turn logits into labels the same way whether a PyTorch model or an exported
ONNX graph (finetune_kit/export) produced them: the two backends then differ in the engine only, so
their predictions can be compared row by row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

PREDICT_BATCH = 32  # rows per forward pass in `predict`

# A tokenized batch (PyTorch tensors, as the tokenizer returns them) → the head's logits.
LogitsOf = Callable[[Mapping[str, torch.Tensor]], np.ndarray]


def torch_logits(model: PreTrainedModel) -> LogitsOf:
    """The PyTorch engine: the model in evaluation mode, no gradients, logits back as fp32 numpy."""
    model.eval()

    def logits_of(encoded: Mapping[str, torch.Tensor]) -> np.ndarray:
        with torch.no_grad():
            output = model(**{name: tensor.to(model.device) for name, tensor in encoded.items()})
        return output.logits.float().cpu().numpy()

    return logits_of


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.from_numpy(logits).float().softmax(-1).numpy()


class PredictsFromLogits(ABC):
    """A task whose predictions depend on its head's logits alone (classification, NER): any engine
    that maps a tokenized batch to logits predicts with it, and it can be exported to ONNX."""

    @abstractmethod
    def predict_from_logits(self, logits_of: LogitsOf, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        """One JSON-ready result per input row, from the logits `logits_of` gives for each batch."""

    def predict(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: Dataset) -> list[dict]:
        return self.predict_from_logits(torch_logits(model), tokenizer, rows)
