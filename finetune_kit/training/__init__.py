"""The training core, task-agnostic: a prepared run (recipe + task + data) → Trainer → run folder."""

from finetune_kit.training.callbacks import RunStopped, StopOnRequest
from finetune_kit.training.runner import Prepared, RunHooks, RunResult, prepare, train

__all__ = ["Prepared", "RunHooks", "RunResult", "RunStopped", "StopOnRequest", "prepare", "train"]
