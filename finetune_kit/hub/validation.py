"""Card metadata checks run before any upload: types and the model-index shape the Hub expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from finetune_kit.errors import UserError


def check_card_metadata(card: ModelCard, where: Path) -> None:
    data: dict[str, Any] = card.data.to_dict()
    problem = _problem(data)
    if problem:
        raise UserError(f"{where}: {problem}; fix the card (finetune-kit card RUN_DIR rewrites it)")


def _problem(data: dict[str, Any]) -> str | None:
    for key in ("tags", "datasets", "language"):
        value = data.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return f"{key} must be a list of strings"
    if data.get("base_model") is not None and Path(str(data["base_model"])).is_absolute():
        return "base_model must be a Hub id, not a local path"
    co2 = data.get("co2_eq_emissions")
    if co2 is not None and (not isinstance(co2, dict) or not isinstance(co2.get("emissions"), (int, float))):
        return "co2_eq_emissions.emissions must be a number of grams"
    if "model-index" in data:
        try:
            model_index_to_eval_results(data["model-index"])
        except (KeyError, TypeError, ValueError) as err:
            return f"model-index is malformed ({err})"
    return None
