"""GGUF checkpoints (llama.cpp files): read with transformers' GGUF loader, dequantized, and turned
into an ordinary model that trains and saves like any other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.errors import ModelError, first_line

SUFFIX = ".gguf"
MAGIC = b"GGUF"  # the first four bytes of every GGUF file


def is_gguf(source: str | Path) -> bool:
    """A path that names a GGUF file (by its suffix; `check_gguf` reads its header)."""
    return str(source).lower().endswith(SUFFIX)


def check_gguf(path: Path) -> None:
    """One clear line for a file named .gguf that is not one (transformers fails deep in its reader)."""
    with path.open("rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise ModelError(f"model.checkpoint: {path} is not a GGUF file (its header lacks the GGUF magic bytes)")


def quantization(path: Path) -> str:
    """The file's quantization as llama.cpp names it (Q4_1, Q8_0, F16, ...), for cards."""
    import gguf  # transformers' GGUF reader needs it too: installed with the offline LLM extra

    field = gguf.GGUFReader(str(path)).fields.get("general.file_type")
    if field is None:
        return "unknown quantization"
    file_type = gguf.LlamaFileType(int(field.parts[field.data[0]][0]))
    return file_type.name.removeprefix("MOSTLY_")


def load_gguf_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def load_gguf_model(model_class: Any, path: Path, **kwargs: Any) -> PreTrainedModel:
    """The dequantized weights in a plain model of the same config. transformers marks a model read
    from GGUF as quantized, and then refuses to train or save it, although its weights are plain
    float tensors: building the model from the config without the quantization entry lifts that."""
    try:
        loaded = model_class.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"model.checkpoint: cannot load GGUF file {path}: {first_line(err)}") from None
    config = loaded.config
    del config.quantization_config
    # A GGUF file has no model folder to name: peft, saving an adapter, would look there for config.json.
    config.name_or_path = ""
    plain = model_class.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    if plain.can_generate():  # a scoring head (a reward model's) has no generation settings to keep
        plain.generation_config = loaded.generation_config
    return plain
