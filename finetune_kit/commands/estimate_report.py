"""An estimate as a person reads it: a table of phases (time, kWh, grams) and one summary line."""

from __future__ import annotations

from rich.table import Table

from finetune_kit.config.recipe import EmissionsConfig
from finetune_kit.console import duration_text, grams_text  # the summary table's own formats
from finetune_kit.costs.prediction import Estimate


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
