"""The Hub's refusals as one-line user errors, shared by push and search."""

from __future__ import annotations

from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

from finetune_kit.errors import UserError, first_line

try:  # huggingface_hub 2.x speaks through httpx2; 1.x through httpx
    from httpx2 import TransportError
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    from httpx import TransportError

# What the client raises when the Hub says no or cannot be reached (ValueError: card validation).
HUB_ERRORS = (HfHubHTTPError, LocalTokenNotFoundError, TransportError, ValueError)


class HubError(UserError):
    """The Hub refused or could not be reached; nothing was changed there."""


def describe_hub_error(err: Exception, repo_id: str) -> str:
    """One line with the fix, for each way the Hub says no."""
    if isinstance(err, LocalTokenNotFoundError):
        return "hub: no Hub token found; set HF_TOKEN or run `hf auth login`"
    if isinstance(err, TransportError):
        return f"hub: cannot reach {constants.ENDPOINT}; check your network or HF_ENDPOINT"
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status == 401:
        return "hub: the token was rejected (401); set HF_TOKEN to a valid token or run `hf auth login`"
    if status == 403:
        return f"hub: the token may not write to {repo_id} (403); use a write token for that namespace"
    if status == 404:
        return f"hub: {repo_id} or its revision was not found (404); check the repo id and --revision"
    return f"hub: {first_line(err)}"
