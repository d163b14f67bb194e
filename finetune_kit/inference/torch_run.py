"""The PyTorch backend: a finished run with its trained model (full, or base + adapter) loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.config.recipe import Recipe
from finetune_kit.inference.predictor import PYTORCH
from finetune_kit.inference.reading import read_run
from finetune_kit.models.building import load_trained
from finetune_kit.runs import FinishedRun
from finetune_kit.tasks import Task


@dataclass
class TorchRun:
    """A finished run with its PyTorch model: a Predictor, and what generate, eval, merge, chat and
    export need besides (the model itself, the run's files)."""

    run_dir: Path
    files: FinishedRun
    recipe: Recipe
    task: Task
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase

    @property
    def backend(self) -> str:
        return PYTORCH

    def predict(self, rows: Dataset) -> list[dict[str, Any]]:
        return self.task.predict(self.model, self.tokenizer, rows)


def load_torch_run(run_dir: Path) -> TorchRun:
    """`read_run` plus the trained model and its tokenizer."""
    files, recipe, task = read_run(run_dir)
    model = load_trained(task.model_head(), files.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(files.model_dir))
    return TorchRun(run_dir, files, recipe, task, model, tokenizer)
