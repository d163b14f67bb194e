"""An estimate as a person reads it: a table of phases (time, kWh, grams) and one summary line; with `--where`, the
run's grams in every grid region, and how much less it would emit in the lowest one."""

from __future__ import annotations

import math

from rich.table import Table

from finetune_kit.config.recipe import EmissionsConfig
from finetune_kit.console import duration_text, grams_text  # the summary table's own formats
from finetune_kit.costs.prediction import Estimate
from finetune_kit.estimate.regions import GridRegion, Placement

WHERE_ROWS = 15  # the lowest regions `--where` shows (with the current one below them); `--where-all` shows all


def estimate_table(estimate: Estimate) -> Table:
    table = Table(title="estimate", title_justify="left")
    table.add_column("phase")
    table.add_column("work")
    for column in ("time", "kWh", "g CO2eq"):
        table.add_column(column, justify="right")
    for p in estimate.phases:
        name = f"{p.name} (spent)" if p.spent else p.name
        table.add_row(name, p.work, duration_text(p.seconds), f"{p.kwh:.3g}", grams_text(p.grams))
    table.add_section()
    table.add_row("[bold]total[/]", "", *_totals(estimate.wall_s, estimate.kwh, estimate.co2_g))
    for side, steps in (("low", "steps as the quickest quarter"), ("high", "steps as the slowest quarter")):
        bound = estimate.bound(side)
        table.add_row(side, steps, *_totals(bound["wall_s"], bound["kwh"], bound["co2_g"]), style="dim")
    return table


def _totals(seconds: float, kwh: float, grams: float) -> tuple[str, str, str]:
    return duration_text(seconds), f"{kwh:.3g}", grams_text(grams)


def summary_line(estimate: Estimate, emissions: EmissionsConfig) -> str:
    """`estimate: 2 min 10 s, 0.0021 kWh, 0.84 g CO2eq (0.71-0.98 g); within emissions.max_co2_g 1 g`."""
    low, high = estimate.bound("low"), estimate.bound("high")
    line = (
        f"estimate: {duration_text(estimate.wall_s)}, {estimate.kwh:.3g} kWh, {grams_text(estimate.co2_g)} g CO2eq "
        f"({grams_text(low['co2_g'])}-{grams_text(high['co2_g'])} g)"
    )
    return "; ".join([line, *budget_notes(estimate, emissions)])


def budget_notes(estimate: Estimate, emissions: EmissionsConfig) -> list[str]:
    return [
        f"{'over' if value > limit else 'within'} emissions.{field} {limit:g} {unit}"
        for field, limit, value, unit in estimate.against(emissions)
    ]


def placement_table(placement: Placement, every: bool = False) -> Table:
    """The `WHERE_ROWS` lowest regions (or `every` one), and below them the current one where it ranks lower."""
    count = len(placement.ranked)
    title = f"where: the run's {placement.kwh:.3g} kWh in {count} grid regions, lowest first"
    table = Table(title=title, title_justify="left")
    for column in ("#", "where", "kind", "code", "g CO2eq/kWh", "g CO2eq"):
        table.add_column(column, justify="right" if column in ("#", "g CO2eq/kWh", "g CO2eq") else "left")
    shown = count if every else min(WHERE_ROWS, count)
    for rank in range(shown):
        _add_region(table, placement, rank)
    if placement.current >= shown:
        table.add_section()
        _add_region(table, placement, placement.current)
    return table


def _add_region(table: Table, placement: Placement, rank: int) -> None:
    region = placement.ranked[rank]
    here = rank == placement.current
    table.add_row(
        str(rank + 1),
        f"{region.name}  ← here" if here else region.name,
        region.kind,
        _code(region),
        grams_text(region.g_per_kwh),
        grams_text(placement.grams(region)),
        style="bold" if here else None,
    )


def _code(region: GridRegion) -> str:
    """How a recipe names the place (emissions.country_iso_code and region), or a cloud's provider and region."""
    return " · ".join(p for p in (region.provider or region.country_iso_code, region.region) if p)


def placement_line(placement: Placement) -> str:
    """`here: Germany, 345 g CO2eq/kWh, 0.69 g (#170 of 359); lowest: ..., 0 g/kWh: nothing emitted; lowest cloud
    region: gcp northamerica-northeast1 (Montreal, Canada), 2 g/kWh, 0.004 g: 172x less`."""
    here = placement.here
    line = (
        f"here: {here.name}, {grams_text(here.g_per_kwh)} g CO2eq/kWh, {grams_text(placement.grams(here))} g "
        f"(#{placement.current + 1} of {len(placement.ranked)})"
    )
    if placement.current == 0:
        return f"{line}: the lowest there is"
    moves = [("lowest", placement.best)]
    cloud = placement.best_cloud
    if cloud is not None and cloud != placement.best and cloud.g_per_kwh < here.g_per_kwh:
        moves.append(("lowest cloud region", cloud))
    return "; ".join([line, *(f"{label}: {_move(placement, region)}" for label, region in moves)])


def _move(placement: Placement, region: GridRegion) -> str:
    factor = placement.factor(region)
    saving = "nothing emitted" if math.isinf(factor) else f"{factor:,.1f}x less"
    where = region.name if region.kind == "cloud" else f"{region.name} ({_code(region)})"
    return f"{where}, {grams_text(region.g_per_kwh)} g/kWh, {grams_text(placement.grams(region))} g: {saving}"
