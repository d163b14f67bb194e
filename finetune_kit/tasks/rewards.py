"""GRPO's reward functions, in the form TRL calls them: `func(prompts=..., completions=...,
**columns)` returning one number (or None, to skip) per completion, logged under the function's
`__name__`. Built-ins score one reply at a time in 0-1 with the held-out metrics' own parsing and
normalisation, so a reward and its evaluation metric agree; a recipe's own function is imported from
its file and its results checked, so a wrong return shape is named in one line, not deep in TRL."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from numbers import Real
from pathlib import Path
from typing import Any

import sacrebleu
from transformers import TrainerState

from finetune_kit.config.rl import REFERENCE_REWARDS, RewardSpec
from finetune_kit.errors import DataError, RecipeError, first_line
from finetune_kit.tasks.generation_metrics import accuracy, entities, entity_f1, rouge_l

RewardFunction = Callable[..., list[float | None]]
ReplyScorer = Callable[[str, str], float]  # (reply, reference) -> score


def reply_text(completion: str | list[dict[str, Any]]) -> str:
    """The reply a reward scores: plain-text data gives a string, conversational data a list of
    messages whose last one is the model's reply."""
    if isinstance(completion, str):
        return completion
    return (completion[-1].get("content") or "") if completion else ""


def _entity_f1(reply: str, reference: str) -> float:
    """One reply's entity F1; a reply rightly finding no entity (both `none`) is perfect, not 0."""
    if not entities(reply) and not entities(reference):
        return 1.0
    return entity_f1([reply], [reference])


REFERENCE_SCORERS: dict[str, ReplyScorer] = {
    "label_match": lambda reply, reference: accuracy([reply], [reference]),
    "bleu": lambda reply, reference: sacrebleu.sentence_bleu(reply, [reference]).score / 100,
    "chrf": lambda reply, reference: sacrebleu.sentence_chrf(reply, [reference]).score / 100,
    "rougeL": lambda reply, reference: rouge_l([reply], [reference]) / 100,
    "entity_f1": _entity_f1,
}


def _reply_scorer(spec: RewardSpec) -> ReplyScorer:
    if spec.name == "format":
        pattern = re.compile(spec.pattern, re.DOTALL)
        return lambda reply, _: float(pattern.fullmatch(reply.strip()) is not None)
    if spec.name == "length":
        limit = spec.max_words
        return lambda reply, _: -max(len(reply.split()) - limit, 0) / limit
    return REFERENCE_SCORERS[spec.name]


def builtin_reward(spec: RewardSpec, reference_column: str) -> RewardFunction:
    """A built-in reward by `spec.name`; the reference ones read each row's `reference_column`."""
    score = _reply_scorer(spec)
    needs_reference = spec.name in REFERENCE_REWARDS

    def reward(completions: list, **columns: Any) -> list[float | None]:
        if needs_reference and reference_column not in columns:
            raise DataError(
                f"the {spec.label} reward compares each reply with the '{reference_column}' column, "
                f"which the rows lack: set data.reference_column or use a reward that needs no reference"
            )
        references = columns[reference_column] if needs_reference else [""] * len(completions)
        return [score(reply_text(c), reply_text(r)) for c, r in zip(completions, references, strict=True)]

    reward.__name__ = spec.label
    return reward


def user_reward(spec: RewardSpec, base_dir: Path) -> RewardFunction:
    """The recipe's `function: file.py:name`, imported from its file (relative to `base_dir`
    unless absolute) and wrapped so each result is checked: one number or None per completion."""
    file_name, name = spec.function.rsplit(":", 1)
    where = f"reward function {spec.function}"
    path = Path(file_name).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise RecipeError(f"{where}: there is no file {path}")
    module_name = f"finetune_kit_reward_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # as importlib's recipe does: dataclasses and pickle look modules up
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:
        raise RecipeError(f"{where}: importing {path} failed: {type(error).__name__}: {first_line(error)}") from error
    if not hasattr(module, name):
        defined = [
            key for key, value in vars(module).items() if inspect.isfunction(value) and value.__module__ == module_name
        ]
        raise RecipeError(f"{where}: {path.name} defines no '{name}' (its functions: {', '.join(defined) or 'none'})")
    function = getattr(module, name)
    if not callable(function):
        raise RecipeError(f"{where}: '{name}' is a value of type {type(function).__name__}, not a function")
    parameters = inspect.signature(function).parameters.values()
    if not any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        raise RecipeError(
            f"{where}: it must take **kwargs, as TRL passes prompts, completions and every data column by "
            f"keyword: def {name}(prompts, completions, **kwargs)"
        )

    def reward(completions: list, **columns: Any) -> list[float | None]:
        scores = function(completions=completions, **columns)
        if not isinstance(scores, (list, tuple)):
            raise DataError(
                f"{where} returned a {type(scores).__name__} for {len(completions)} completions; "
                f"return a list with one number per completion"
            )
        if len(scores) != len(completions):
            raise DataError(
                f"{where} returned {len(scores)} values for {len(completions)} completions; "
                f"return one number per completion"
            )
        for index, value in enumerate(scores, start=1):
            if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
                shown = " ".join(repr(value).split())[:60]
                raise DataError(f"{where} returned {shown} for completion {index}; return a number (or None to skip)")
        return [None if value is None else float(value) for value in scores]

    reward.__name__ = spec.label
    return reward


def for_tasks(function: RewardFunction, tasks: list[str] | None, task_column: str) -> RewardFunction:
    """`function` scoring only the rows whose task (`task_column`) is one of `tasks`, called on those rows
    alone (a user's function never sees another task's replies); the other rows get None, which TRL leaves
    out of this reward's mean and of their total, so each task of a mix trains on its own reward."""
    if tasks is None:
        return function
    wanted = set(tasks)

    def reward(completions: list, **columns: Any) -> list[float | None]:
        rows = [index for index, task in enumerate(columns[task_column]) if task in wanted]
        scores: list[float | None] = [None] * len(completions)
        if rows:
            per_row = {key: value for key, value in columns.items() if _is_per_row(value, len(completions))}
            selected = {key: [value[index] for index in rows] for key, value in per_row.items()}
            chosen = function(completions=[completions[index] for index in rows], **(columns | selected))
            for index, score in zip(rows, chosen, strict=True):
                scores[index] = score
        return scores

    reward.__name__ = function.__name__
    return reward


def _is_per_row(value: Any, rows: int) -> bool:
    """A column TRL passes (one value per completion), not one of its helpers (trainer_state, log_metric)."""
    return isinstance(value, list) and len(value) == rows


def check_rewards(functions: list[RewardFunction], prompts: list, completions: list, columns: dict[str, list]) -> None:
    """Call each reward once on a probe (a few rows, their references as the completions) the way
    TRL will, so a reward that fails or returns the wrong shape stops the run before training
    starts, not at the first step."""
    for function in functions:
        function(
            prompts=prompts,
            completions=completions,
            trainer_state=TrainerState(),
            log_extra=lambda column, values: None,
            log_metric=lambda name, value: None,
            **columns,
        )
