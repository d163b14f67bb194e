"""Where model weights come from: Hub ids, local folders, or checkpoints bundled as packages."""

from finetune_kit.models.checkpoints import (
    base_model_id,
    load_pretrained_model,
    load_tokenizer,
    resolve_checkpoint,
)

__all__ = ["base_model_id", "load_pretrained_model", "load_tokenizer", "resolve_checkpoint"]
