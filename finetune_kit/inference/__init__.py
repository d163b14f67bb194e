"""Use a finished run: open it as a `Predictor` on one backend (its PyTorch model, or its ONNX export
run by ONNX Runtime) with `open_run`, or read it without weights with `read_run`; predict, generate,
and evaluate it on new labelled data."""

from finetune_kit.inference.evaluation import evaluate_file
from finetune_kit.inference.generation import continuations, generate, generated_tokens, with_generation_overrides
from finetune_kit.inference.onnx_run import GRAPHS, LOGITS, OnnxLogits, OnnxRun, require_exportable
from finetune_kit.inference.opening import open_run
from finetune_kit.inference.predictor import BACKENDS, ONNX, ONNX_INT8, PYTORCH, Predictor
from finetune_kit.inference.reading import read_run
from finetune_kit.inference.rows import read_inputs, write_predictions
from finetune_kit.inference.torch_run import TorchRun

__all__ = [
    "BACKENDS",
    "GRAPHS",
    "LOGITS",
    "ONNX",
    "ONNX_INT8",
    "PYTORCH",
    "OnnxLogits",
    "OnnxRun",
    "Predictor",
    "TorchRun",
    "continuations",
    "evaluate_file",
    "generate",
    "generated_tokens",
    "open_run",
    "read_inputs",
    "read_run",
    "require_exportable",
    "with_generation_overrides",
    "write_predictions",
]
