"""Publish a finished run folder to the Hub in one commit: weights, tokenizer, card, recipe, results.

The token comes from huggingface_hub itself (HF_TOKEN, or a saved `hf auth login`), or from the `api`
a caller builds with its own token (the studio); it is never printed, logged or written by this module.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard

from finetune_kit.config.recipe import HubConfig
from finetune_kit.errors import UserError
from finetune_kit.hub.errors import HUB_ERRORS, HubError, describe_hub_error
from finetune_kit.hub.validation import check_card_metadata
from finetune_kit.runs import FinishedRun

MODEL_SKIP = {"training_args.bin"}  # a pickle: never published


def push_run(
    run_dir: Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    api: HfApi | None = None,
) -> str:
    """Create the repo if needed and upload everything in a single commit; returns the commit URL."""
    run = FinishedRun.open(run_dir)
    if not run.card.is_file():
        raise UserError(f"{run_dir}: no model card; write it with: finetune-kit card {run_dir}")
    operations = _operations(run)
    card = ModelCard.load(run.card)
    check_card_metadata(card, run.card)
    api = api or HfApi()
    try:
        card.validate()  # the Hub's own metadata check, before anything is created
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"Upload {run_dir.name} with finetune-kit",
            revision=revision,
        )
    except HUB_ERRORS as err:
        raise HubError(describe_hub_error(err, repo_id)) from None
    return commit.commit_url


def push_after_training(run_dir: Path, hub: HubConfig) -> str:
    try:
        return push_run(
            run_dir, hub.repo_id, private=hub.private, revision=hub.revision, commit_message=hub.commit_message
        )
    except HubError as err:
        raise HubError(f"{err} — the run itself is complete in {run_dir}; retry with: finetune-kit push") from None


def _operations(run: FinishedRun) -> list[CommitOperationAdd]:
    """The model files at the repo root, the run's results beside them; checkpoints stay home."""
    operations = [
        CommitOperationAdd(path_in_repo=str(path.relative_to(run.model_dir)), path_or_fileobj=str(path))
        for path in sorted(run.model_dir.rglob("*"))
        if path.is_file() and path.name not in MODEL_SKIP
    ]
    operations += [CommitOperationAdd(path_in_repo=path.name, path_or_fileobj=str(path)) for path in run.result_files()]
    return operations
