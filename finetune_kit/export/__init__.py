"""ONNX export of classification, NER and embedding runs, checked against PyTorch, optionally int8-quantized.

Why not optimum: every optimum-onnx release pins transformers < 4.58, and this project runs on
transformers 5. So PyTorch's own public exporter writes the graph (`torch.onnx.export`: the
TorchScript tracer for BERT-like encoders, whose layers ONNX Runtime's transformer optimizer then
fuses; torch.export for other models, the tracer where it fails), and ONNX Runtime runs and
quantizes it (`InferenceSession`, `quantize_dynamic`): graph.py, fusion.py, quantization.py, and
the ONNX Runtime backend of finetune_kit.inference (onnx_run.py), which `predict` and `serve` use
too; parity.py compares the graph with PyTorch; folder.py builds the export folder.
"""

from finetune_kit.export.folder import ExportResult, export_run

__all__ = ["ExportResult", "export_run"]
