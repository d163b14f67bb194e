"""A classification or NER model, or an encoder with its pooling (`PooledEncoder`) → one ONNX graph:
the tokenizer's tensors in (dynamic batch and sequence axes), `logits` or `embedding` out."""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.errors import ModelError, first_line
from finetune_kit.export.fusion import fusable, fuse_layers
from finetune_kit.inference.onnx_run import EMBEDDING, LOGITS, Pooling

DYNAMO, TORCHSCRIPT = "torch.export (dynamo)", "TorchScript"
FUSED = "TorchScript, layers fused by ONNX Runtime"
TORCHSCRIPT_OPSET = 18  # what `quantize_dynamic` and current ONNX Runtime handle; dynamo picks its own
# An encoder with its pooling is traced at 17: from 18 on, reductions take their axes as an input, which ONNX
# Runtime's symbolic shape inference cannot read (a normalization's ReduceL2), and without shapes its optimizer
# leaves each layer's skip connection and layer norm unfused.
POOLED_OPSET = 17
# Two rows of different lengths: padding and a batch above 1, so no axis is fixed to its example size.
_EXAMPLE = ["finetune kit exports this model", "to onnx"]
_SINGLE_FILE_LIMIT = 2 * 1024**3  # protobuf's cap on one .onnx file; heavier weights go to model.onnx.data


class PooledEncoder(nn.Module):
    """An encoder followed by a task's pooling, as one module to export: the tokenizer's tensors in, one
    vector per row out. It answers for its encoder where the exporter asks (`config`, the attention)."""

    def __init__(self, encoder: PreTrainedModel, pooling: Pooling) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.config = encoder.config

    def set_attn_implementation(self, implementation: str) -> None:
        self.encoder.set_attn_implementation(implementation)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return self.pooling(self.encoder(**inputs).last_hidden_state, attention_mask)


def export_graph(model: PreTrainedModel | PooledEncoder, tokenizer: PreTrainedTokenizerBase, target: Path) -> str:
    """Write the graph to `target` and name the exporter that made it. A BERT-like encoder is traced
    with its eager attention and its layers fused by ONNX Runtime (fusion.py): the fastest graph on a
    CPU, int8 above all. Other models, or one whose layers do not fuse, go through torch.export
    (`dynamo=True`), and a model it cannot capture through the TorchScript tracer, which has exported
    BERT-like encoders for years. Either way the parity check decides whether the graph is kept.
    Tracing switches `model` to eager attention: the caller exports a model it no longer runs."""
    model.eval()
    example = _example_inputs(model, tokenizer)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    output = EMBEDDING if isinstance(model, PooledEncoder) else LOGITS
    options = {"input_names": list(example), "output_names": [output], "external_data": weights >= _SINGLE_FILE_LIMIT}
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


def _trace(model: nn.Module, example: dict[str, torch.Tensor], target: Path, options: dict[str, Any]) -> None:
    (output,) = options["output_names"]
    torch.onnx.export(
        model,
        (),
        target,
        kwargs=example,
        dynamic_axes={name: {0: "batch", 1: "sequence"} for name in example} | {output: _output_axes(model, example)},
        opset_version=POOLED_OPSET if isinstance(model, PooledEncoder) else TORCHSCRIPT_OPSET,
        dynamo=False,
        **options,
    )


def _output_axes(model: nn.Module, example: dict[str, torch.Tensor]) -> dict[int, str]:
    """Logits per row (classification) or per token (NER), or a vector per row: which axes vary."""
    with torch.no_grad():
        output = model(**example)
    per_token = getattr(output, "logits", output).dim() == 3
    return {0: "batch", 1: "sequence"} if per_token else {0: "batch"}


def _example_inputs(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
    """The tensors the tokenizer gives that the model's forward takes, in the forward's order: the
    TorchScript tracer names its graph inputs in that order."""
    encoded = tokenizer(_EXAMPLE, padding=True, return_tensors="pt")
    parameters = inspect.signature(model.forward).parameters
    if isinstance(model, PooledEncoder):  # what both the wrapper and its encoder take
        parameters = {name: None for name in parameters if name in inspect.signature(model.encoder.forward).parameters}
    device = next(model.parameters()).device
    return {name: encoded[name].to(device) for name in parameters if name in encoded}
