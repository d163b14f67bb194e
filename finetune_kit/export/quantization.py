"""int8 weights for an exported graph: ONNX Runtime's dynamic quantization."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

QUANTIZED_OPS = ["MatMul", "Attention"]  # a fused attention (fusion.py) becomes QAttention


def quantize_int8(source: Path, target: Path) -> None:
    """Weights of the matrix multiplications and fused attentions stored as int8 (QInt8) with a scale
    per output channel, activations quantized on the fly batch by batch: no calibration data is
    needed, and the accuracy it costs is measured afterwards by the parity check on the run's
    validation rows. The embedding lookups stay fp32: they cost no arithmetic, and quantizing them
    cost accuracy."""
    with _without_preprocessing_advice():
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=QUANTIZED_OPS,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # fused operators' outputs carry no type
        )


@contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    """`quantize_dynamic` advises ONNX Runtime's pre-processing through the root logger, which also
    gives the root logger a stderr handler. That pre-processing's symbolic shape inference fails on
    torch.export graphs, and skipped, it left int8 MiniLM no faster: the advice is noise here. A
    handler on the root logger for the call keeps both the line and the handler away."""
    handler = logging.NullHandler()
    logging.root.addHandler(handler)
    try:
        yield
    finally:
        logging.root.removeHandler(handler)
