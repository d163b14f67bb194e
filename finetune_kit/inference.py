"""Use a finished run: predict on new inputs, evaluate on new labelled data."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from datasets import Dataset, DatasetDict
from pydantic import ValidationError
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from finetune_kit.config.loading import validate_recipe
from finetune_kit.config.recipe import Recipe
from finetune_kit.data import conll_columns_of, load_source
from finetune_kit.emissions.inference import InferenceMeter
from finetune_kit.errors import DataError, ModelError
from finetune_kit.models.building import load_trained
from finetune_kit.runs import FinishedRun, Layout
from finetune_kit.tasks import Task, build_task
from finetune_kit.tasks.chat_decoder import ChatDecoder
from finetune_kit.tasks.generation import GenerationSettings, generate_texts, reply_texts
from finetune_kit.training.arguments import build_training_arguments
from finetune_kit.training.precision import resolve_precision
from finetune_kit.training.trainer import build_trainer, evaluate

if TYPE_CHECKING:
    from finetune_kit.export.runtime import OnnxRun


@dataclass
class LoadedRun:
    run_dir: Path
    files: FinishedRun
    recipe: Recipe
    task: Task
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


def read_run(run_dir: Path) -> tuple[FinishedRun, Recipe, Task]:
    """A finished run folder's files, recipe and task, with what the task learned (labels) read
    back from the saved config: all that `card` needs, without loading any weights."""
    files = FinishedRun.open(run_dir)
    recipe = validate_recipe(yaml.safe_load(files.recipe_text()), source=str(files.path(Layout.RECIPE)))
    task = build_task(recipe)
    task.adopt_trained_config(AutoConfig.from_pretrained(str(files.model_dir)))
    return files, recipe, task


def load_run(run_dir: Path) -> LoadedRun:
    """`read_run` plus the trained model (full, or base + adapter) and its tokenizer."""
    files, recipe, task = read_run(run_dir)
    model = load_trained(task.model_head(), files.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(files.model_dir))
    return LoadedRun(run_dir, files, recipe, task, model, tokenizer)


def read_inputs(run: LoadedRun | OnnxRun, input_file: Path | None, texts: list[str]) -> Dataset:
    """Rows to predict on: a data file with the recipe's input columns, or `--text` values."""
    columns = run.task.input_columns()
    if texts:
        if len(columns) > 1:
            raise DataError(f"--text: this model reads {len(columns)} columns ({', '.join(columns)}); use --input FILE")
        return Dataset.from_dict({columns[0]: texts})
    if input_file is None:
        raise DataError("predict needs --input FILE or --text TEXT")
    rows = load_source(str(input_file), "input", conll_columns=conll_columns_of(run.recipe.data))
    missing = [c for c in columns if c not in rows.column_names]
    if missing:
        raise DataError(f"{input_file}: column '{missing[0]}' not found; columns are: {', '.join(rows.column_names)}")
    return rows


def predict(run: LoadedRun | OnnxRun, rows: Dataset) -> list[dict[str, Any]]:
    """The task's predictions with the PyTorch model, or with the run's ONNX export (same form)."""
    if isinstance(run, LoadedRun):
        return run.task.predict(run.model, run.tokenizer, rows)
    return run.predict(rows)


def generate(run: LoadedRun, prompts: list[str], overrides: dict[str, Any]) -> list[str]:
    """For a causal-LM run, each prompt with its continuation; for an instruction-tuned run, the
    reply to each prompt, formatted with the run's chat template. The recipe's generation settings
    apply, with `overrides` on top."""
    settings = getattr(run.recipe, "generation", None)
    if settings is None or run.task.pipeline_tag != "text-generation":
        raise ModelError(
            f"{run.run_dir}: generate needs a causal-lm or sft run (this one is {run.recipe.task}); use predict"
        )
    settings = with_generation_overrides(settings, overrides)
    if isinstance(run.task, ChatDecoder):  # a chat model: the prompt goes through its template
        return reply_texts(run.model, run.tokenizer, [run.task.conversation_for(p) for p in prompts], settings)
    texts = generate_texts(run.model, run.tokenizer, prompts, settings, continue_prompt=True)
    return [prompt + text for prompt, text in zip(prompts, texts, strict=True)]


def generated_tokens(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> int:
    """How many tokens the model wrote, counted by encoding its text again: an end-of-text or
    end-of-turn token it stopped on is not in the text, so the count is at most one short per text."""
    return sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)


def continuations(run: LoadedRun, prompts: list[str], texts: list[str]) -> list[str]:
    """What `generate` wrote, without the prompts a causal-LM run's texts start with."""
    if isinstance(run.task, ChatDecoder):
        return texts
    return [text[len(prompt) :] for prompt, text in zip(prompts, texts, strict=True)]


def with_generation_overrides(settings: GenerationSettings, overrides: dict[str, Any]) -> GenerationSettings:
    """Settings with command-line values (None: not given) on top, checked as the recipe's are."""
    try:
        return settings.model_validate(settings.model_dump() | {k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        problem = err.errors()[0]
        raise DataError(f"--{str(problem['loc'][0]).replace('_', '-')}: {problem['msg']}") from None


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def evaluate_file(run: LoadedRun, data_file: Path) -> dict[str, Any]:
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
