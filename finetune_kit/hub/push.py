"""Publish a finished run folder to the Hub in one commit: weights, tokenizer, card, recipe, results.

The token comes from huggingface_hub itself (HF_TOKEN, or a saved `hf auth login`); it is never
printed, logged or written by this module.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, constants
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

from finetune_kit.config.recipe import HubConfig
from finetune_kit.errors import UserError, first_line
from finetune_kit.hub.validation import check_card_metadata

try:  # huggingface_hub 2.x speaks through httpx2; 1.x through httpx
    from httpx2 import TransportError
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    from httpx import TransportError

# Run-folder files that go to the repo root next to the weights; pickles and checkpoints stay home.
RESULT_FILES = ("README.md", "recipe.yaml", "metrics.json", "emissions.json", "log.jsonl", "training_curve.png")
MODEL_SKIP = {"training_args.bin"}


class PushError(UserError):
    """The Hub refused or could not be reached; nothing was committed."""


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
    except (HfHubHTTPError, LocalTokenNotFoundError, TransportError, ValueError) as err:
        raise PushError(describe_hub_error(err, repo_id)) from None
    return commit.commit_url


def push_after_training(run_dir: Path, hub: HubConfig) -> str:
    try:
        return push_run(
            run_dir, hub.repo_id, private=hub.private, revision=hub.revision, commit_message=hub.commit_message
        )
    except PushError as err:
        raise PushError(f"{err} — the run itself is complete in {run_dir}; retry with: finetune-kit push") from None


def describe_hub_error(err: Exception, repo_id: str) -> str:
    """One line with the fix, for each way the Hub says no."""
    endpoint = constants.ENDPOINT
    if isinstance(err, LocalTokenNotFoundError):
        return "hub: no Hub token found; set HF_TOKEN or run `hf auth login`"
    if isinstance(err, TransportError):
        return f"hub: cannot reach {endpoint}; check your network or HF_ENDPOINT"
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status == 401:
        return "hub: the token was rejected (401); set HF_TOKEN to a valid token or run `hf auth login`"
    if status == 403:
        return f"hub: the token may not write to {repo_id} (403); use a write token for that namespace"
    if status == 404:
        return f"hub: {repo_id} or its revision was not found (404); check the repo id and --revision"
    return f"hub: {first_line(err)}"


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
