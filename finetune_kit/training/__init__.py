"""The task-agnostic runner: recipe + task → Trainer → run folder."""

from finetune_kit.training.runner import Prepared, RunResult, prepare, train

__all__ = ["Prepared", "RunResult", "prepare", "train"]
