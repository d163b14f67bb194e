"""ONNX Runtime's transformer optimizer on an exported encoder: each layer's attention, skip
connections with layer norm, and bias with GELU become one fused kernel each.

Unfused, a BERT layer is dozens of small operators (transposes, masks, softmax) that cost more
than its matrix multiplications once those are int8; fused, dynamic quantization also turns the
attention into one int8 kernel (QAttention). The optimizer recognises the attention pattern of
the TorchScript tracer's graph of the eager attention code, not torch.export's graph of SDPA.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from onnxruntime.transformers.optimizer import optimize_model
from transformers import PretrainedConfig

# Encoders whose layers follow BERT's pattern, which the optimizer's `bert` fusions match.
BERT_LIKE = frozenset({"bert", "distilbert", "roberta", "xlm-roberta", "camembert", "electra"})


def fusable(config: PretrainedConfig) -> bool:
    return config.model_type in BERT_LIKE


def fuse_layers(graph: Path, config: PretrainedConfig) -> None:
    """Rewrite `graph` in place with fused operators. Fewer than one attention per layer means the
    pattern was not recognised (ValueError): the caller then exports the unfused way."""
    with contextlib.redirect_stdout(io.StringIO()):  # its shape inference prints failures it recovers from
        optimized = optimize_model(
            str(graph), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
        )
    attentions = optimized.get_fused_operator_statistics().get("Attention", 0)
    if attentions < config.num_hidden_layers:
        raise ValueError(f"fused attention in {attentions} of {config.num_hidden_layers} layers")
    optimized.save_model_to_file(str(graph))
