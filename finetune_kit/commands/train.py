"""`finetune-kit train` as a library call: prepare → estimate within the budget (unless resuming) → the training
core → the model card → the push. The CLI and every trial of a sweep call it."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import TrainerCallback

from finetune_kit.commands.console_progress import ConsoleProgress
from finetune_kit.commands.estimate_report import summary_line
from finetune_kit.config.recipe import Recipe
from finetune_kit.console import ConsoleReport
from finetune_kit.estimate.budget import calibrate_budgeted, refuse_over_budget
from finetune_kit.hub.card import write_model_card
from finetune_kit.hub.push import push_after_training
from finetune_kit.runs import RunFiles
from finetune_kit.training import Prepared, RunHooks, RunResult, prepare
from finetune_kit.training import train as train_prepared


def train(
    recipe: Recipe,
    *,
    resume: bool = False,
    overwrite: bool = False,
    force: bool = False,
    extra_callbacks: Sequence[TrainerCallback] = (),
) -> RunResult:
    """One run, shown on the console. A run with an emissions budget is estimated first and refused when the
    estimate exceeds it, unless `force`; `extra_callbacks` join the run's own (a sweep's pruning). The run folder
    moves into place with its model card; a recipe with `hub:` is then pushed (main process only)."""
    report = ConsoleReport()
    prepared = prepare(recipe)
    calibrated = None if resume else calibrate_budgeted(prepared, report)
    if calibrated is not None:
        report.note(summary_line(calibrated.estimate, recipe.emissions))
        refuse_over_budget(calibrated.estimate, recipe.emissions, force=force)
    hooks = RunHooks(progress=report, display=ConsoleProgress, complete=_write_card)
    result = train_prepared(
        prepared,
        resume=resume,
        overwrite=overwrite,
        calibrated=calibrated,
        extra_callbacks=extra_callbacks,
        hooks=hooks,
    )
    if result.is_main and recipe.hub is not None:
        push_after_training(result.run_dir, recipe.hub)
    return result


def _write_card(files: RunFiles, prepared: Prepared) -> None:
    """The card is written from the run's own files, in the folder before it moves into place."""
    write_model_card(files, prepared.recipe, prepared.task)
