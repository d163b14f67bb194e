"""The run folder: everything one run produced, in one place, complete or clearly not."""

from finetune_kit.runs.folder import RunFolder

__all__ = ["RunFolder"]
