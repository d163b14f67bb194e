"""The run folder: layout, writer (partial → complete) and reader."""

from finetune_kit.runs.folder import FinishedRun, Layout, RunFiles, RunFolder

__all__ = ["FinishedRun", "Layout", "RunFiles", "RunFolder"]
