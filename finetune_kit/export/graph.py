"""A classification or NER model → one ONNX graph: the tokenizer's tensors in (dynamic batch and
sequence axes), `logits` out."""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.errors import ModelError, first_line
from finetune_kit.export.fusion import fusable, fuse_layers
from finetune_kit.inference.onnx_run import LOGITS

DYNAMO, TORCHSCRIPT = "torch.export (dynamo)", "TorchScript"
FUSED = "TorchScript, layers fused by ONNX Runtime"
TORCHSCRIPT_OPSET = 18  # what `quantize_dynamic` and current ONNX Runtime handle; dynamo picks its own
# Two rows of different lengths: padding and a batch above 1, so no axis is fixed to its example size.
_EXAMPLE = ["finetune kit exports this model", "to onnx"]
_SINGLE_FILE_LIMIT = 2 * 1024**3  # protobuf's cap on one .onnx file; heavier weights go to model.onnx.data


def export_graph(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> str:
    """Write the graph to `target` and name the exporter that made it. A BERT-like encoder is traced
    with its eager attention and its layers fused by ONNX Runtime (fusion.py): the fastest graph on a
    CPU, int8 above all. Other models, or one whose layers do not fuse, go through torch.export
    (`dynamo=True`), and a model it cannot capture through the TorchScript tracer, which has exported
    BERT-like encoders for years. Either way the parity check decides whether the graph is kept.
    Tracing switches `model` to eager attention: the caller exports a model it no longer runs."""
    model.eval()
    example = _example_inputs(model, tokenizer)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    options = {"input_names": list(example), "output_names": [LOGITS], "external_data": weights >= _SINGLE_FILE_LIMIT}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" and the like
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and exporter notes a user cannot act on
        if fusable(model.config):
            try:
                model.set_attn_implementation("eager")  # the attention pattern ONNX Runtime's fusions know
                _trace(model, example, target, options)
                fuse_layers(target, model.config)
                return FUSED
            except (RuntimeError, TypeError, ValueError):
                target.unlink(missing_ok=True)
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
            _trace(model, example, target, options)
        except (RuntimeError, TypeError, ValueError) as err:
            raise ModelError(f"ONNX export of this {model.config.model_type} model failed: {first_line(err)}") from None
    return TORCHSCRIPT


def _trace(model: PreTrainedModel, example: dict[str, torch.Tensor], target: Path, options: dict[str, Any]) -> None:
    torch.onnx.export(
        model,
        (),
        target,
        kwargs=example,
        dynamic_axes={name: {0: "batch", 1: "sequence"} for name in example} | {LOGITS: _logits_axes(model, example)},
        opset_version=TORCHSCRIPT_OPSET,
        dynamo=False,
        **options,
    )


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
