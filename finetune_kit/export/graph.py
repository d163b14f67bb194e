"""A classification or NER model → one ONNX graph: the tokenizer's tensors in (dynamic batch and
sequence axes), `logits` out."""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.errors import ModelError, first_line

LOGITS = "logits"
DYNAMO, TORCHSCRIPT = "torch.export (dynamo)", "TorchScript"
TORCHSCRIPT_OPSET = 18  # what `quantize_dynamic` and current ONNX Runtime handle; dynamo picks its own
# Two rows of different lengths: padding and a batch above 1, so no axis is fixed to its example size.
_EXAMPLE = ["finetune kit exports this model", "to onnx"]
_SINGLE_FILE_LIMIT = 2 * 1024**3  # protobuf's cap on one .onnx file; heavier weights go to model.onnx.data


def export_graph(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> str:
    """Write the graph to `target` and name the exporter that made it. torch.export (`dynamo=True`)
    comes first; a model it cannot capture goes through the TorchScript tracer, which has exported
    BERT-like encoders for years. Either way the parity check decides whether the graph is kept."""
    model.eval()
    example = _example_inputs(model, tokenizer)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    options = {"input_names": list(example), "output_names": [LOGITS], "external_data": weights >= _SINGLE_FILE_LIMIT}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" and the like
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and exporter notes a user cannot act on
        try:
            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
            torch.onnx.export(
                model,
                (),
                target,
                kwargs=example,
                dynamic_shapes={name: {0: batch, 1: sequence} for name in example},
                dynamo=True,
                verbose=False,
                **options,
            )
            return DYNAMO
        except torch.onnx.OnnxExporterError:
            target.unlink(missing_ok=True)
        try:
            torch.onnx.export(
                model,
                (),
                target,
                kwargs=example,
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in example}
                | {LOGITS: _logits_axes(model, example)},
                opset_version=TORCHSCRIPT_OPSET,
                dynamo=False,
                **options,
            )
        except (RuntimeError, TypeError, ValueError) as err:
            raise ModelError(f"ONNX export of this {model.config.model_type} model failed: {first_line(err)}") from None
    return TORCHSCRIPT


def _logits_axes(model: PreTrainedModel, example: dict[str, torch.Tensor]) -> dict[int, str]:
    """A label per row (classification) or per token (NER): which logits axes vary."""
    with torch.no_grad():
        per_token = model(**example).logits.dim() == 3
    return {0: "batch", 1: "sequence"} if per_token else {0: "batch"}


def _example_inputs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
    """The tensors the tokenizer gives that the model's forward takes, in the forward's order: the
    TorchScript tracer names its graph inputs in that order."""
    encoded = tokenizer(_EXAMPLE, padding=True, return_tensors="pt")
    parameters = inspect.signature(model.forward).parameters
    return {name: encoded[name].to(model.device) for name in parameters if name in encoded}
