"""`eval`: a finished run's metrics on a new labelled file, with the energy the evaluation cost."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from datasets import DatasetDict

from finetune_kit.data import conll_columns_of, load_source
from finetune_kit.emissions.inference import InferenceMeter
from finetune_kit.inference.torch_run import TorchRun
from finetune_kit.training.arguments import build_training_arguments
from finetune_kit.training.precision import resolve_precision
from finetune_kit.training.trainer import build_trainer, evaluate


def evaluate_file(run: TorchRun, data_file: Path) -> dict[str, Any]:
    """The task's metrics on a new labelled file, computed the way training evaluated, and under
    `inference` what the evaluation cost per 1,000 rows (unless the run's recipe disables emissions)."""
    rows = load_source(str(data_file), "eval", conll_columns=conll_columns_of(run.recipe.data))
    run.task.inspect_file_to_evaluate(rows, str(data_file))
    features = run.task.preprocess(DatasetDict(eval=rows), run.tokenizer)["eval"]
    precision = resolve_precision(run.recipe.training.precision)
    with tempfile.TemporaryDirectory() as scratch:
        args = build_training_arguments(run.recipe.training, run.task, Path(scratch), precision)
        # TRL's preference trainers are not built without a training set; nothing trains here.
        trainer = build_trainer(run.task, args, run.model, run.tokenizer, train_dataset=features, eval_dataset=features)
        with InferenceMeter(run.recipe.emissions, "predictions") as meter:
            with meter.measuring():
                metrics = evaluate(trainer, features, "eval")
            meter.add(len(features))
    if meter.result is not None:
        metrics["inference"] = meter.result.to_dict()
    return metrics
