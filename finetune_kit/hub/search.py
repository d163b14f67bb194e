"""Find Hub models under an emissions threshold.

`HfApi.list_models(emissions_thresholds=...)` filters on the client, but it applies `limit`
*before* filtering (so `limit=10` can return 0 models), reads "0.5 kg" as 0.5 g, and silently drops
models that state no emissions. So this asks `list_models(cardData=True)` for cards and filters
itself: the limit counts models that pass, values in kg become grams, and models with no
emissions data are counted for the footer.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from huggingface_hub import HfApi

from finetune_kit.hub.errors import HUB_ERRORS, HubError, describe_hub_error

UNIT_TO_GRAMS = {"g": 1.0, "kg": 1000.0, "t": 1e6, "mg": 1e-3}
NUMBER_WITH_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(mg|kg|g|t)?\b", re.I)


@dataclass
class FoundModel:
    model_id: str
    task: str | None
    emissions_g: float
    source: str | None
    downloads: int
    metric: str | None  # "accuracy 0.9128", from the card's model-index


@dataclass
class SearchResult:
    models: list[FoundModel] = field(default_factory=list)
    scanned: int = 0
    without_emissions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "models": [asdict(m) for m in self.models]}


def emissions_in_grams(co2: Any) -> float | None:
    """Grams from any form cards use: 12.3, "70 g", "0.5 kg", {"emissions": 70, ...}; None if absent or 0."""
    if isinstance(co2, dict):
        value, unit = co2.get("emissions"), str(co2.get("unit") or "g")
        grams = emissions_in_grams(f"{value} {unit}" if isinstance(value, (int, float)) else value)
        return grams
    if isinstance(co2, bool) or co2 is None:
        return None
    if isinstance(co2, (int, float)):
        return float(co2) or None
    match = NUMBER_WITH_UNIT.match(str(co2))
    if not match:
        return None
    grams = float(match.group(1)) * UNIT_TO_GRAMS[(match.group(2) or "g").lower()]
    return grams or None


def search_models(
    *,
    max_g: float,
    min_g: float = 0.0,
    task: str | None = None,
    author: str | None = None,
    sort: str | None = "downloads",
    limit: int = 20,
    scan: int = 2000,
    api: HfApi | None = None,
) -> SearchResult:
    """Models whose card states emissions within [min_g, max_g] grams, at most `limit`, scanning at most `scan`."""
    try:
        return _search(api or HfApi(), max_g, min_g, task, author, sort, limit, scan)
    except HUB_ERRORS as err:
        raise HubError(describe_hub_error(err, author or "the model listing")) from None


def _search(
    api: HfApi,
    max_g: float,
    min_g: float,
    task: str | None,
    author: str | None,
    sort: str | None,
    limit: int,
    scan: int,
) -> SearchResult:
    result = SearchResult()
    listing = api.list_models(cardData=True, pipeline_tag=task, author=author, sort=sort, limit=scan)
    for info in listing:
        result.scanned += 1
        card = info.card_data.to_dict() if info.card_data is not None else {}
        grams = emissions_in_grams(card.get("co2_eq_emissions"))
        if grams is None:
            result.without_emissions += 1
            continue
        if min_g <= grams <= max_g:
            co2 = card.get("co2_eq_emissions")
            result.models.append(
                FoundModel(
                    model_id=info.id,
                    task=info.pipeline_tag or card.get("pipeline_tag"),
                    emissions_g=grams,
                    source=co2.get("source") if isinstance(co2, dict) else None,
                    downloads=info.downloads or 0,
                    metric=_main_metric(card),
                )
            )
            if len(result.models) >= limit:
                break
    return result


def _main_metric(card: dict[str, Any]) -> str | None:
    for entry in card.get("model-index") or []:
        for found in entry.get("results") or []:
            for metric in found.get("metrics") or []:
                if "value" in metric:
                    return f"{metric.get('type', 'metric')} {metric['value']}"
    return None
