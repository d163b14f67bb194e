"""Publish a finished run folder to the Hub in one commit: weights, tokenizer, card, recipe, results.

The token comes from huggingface_hub itself (HF_TOKEN, or a saved `hf auth login`); it is never
printed, logged or written by this module.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard

from finetune_kit.config.recipe import HubConfig
from finetune_kit.errors import UserError
from finetune_kit.hub.errors import HUB_ERRORS, HubError, describe_hub_error
from finetune_kit.hub.validation import check_card_metadata

# Run-folder files that go to the repo root next to the weights; pickles and checkpoints stay home.
RESULT_FILES = ("README.md", "recipe.yaml", "metrics.json", "emissions.json", "log.jsonl", "training_curve.png")
MODEL_SKIP = {"training_args.bin"}


def push_run(
    run_dir: Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create the repo if needed and upload everything in a single commit; returns the commit URL."""
    operations = _operations(run_dir)
    card = ModelCard.load(run_dir / "README.md")
    check_card_metadata(card, run_dir / "README.md")
    api = HfApi()
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


def _operations(run_dir: Path) -> list[CommitOperationAdd]:
    model_dir = run_dir / "model"
    if not model_dir.is_dir() or not (run_dir / "README.md").is_file():
        raise UserError(f"{run_dir}: not a finished run folder (needs model/ and README.md)")
    operations = [
        CommitOperationAdd(path_in_repo=str(path.relative_to(model_dir)), path_or_fileobj=str(path))
        for path in sorted(model_dir.rglob("*"))
        if path.is_file() and path.name not in MODEL_SKIP
    ]
    operations += [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(run_dir / name))
        for name in RESULT_FILES
        if (run_dir / name).is_file()
    ]
    return operations
