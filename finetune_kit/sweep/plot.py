"""pareto.png: each trial's validation metric against its grams CO2eq, the front and the best marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt

from finetune_kit.sweep.report import PLOT_FILE, SweepReport


def plot_front(report: SweepReport) -> Path | None:
    """None when no trial has both a metric and grams to place."""
    placed = [r for r in report.trials if r.metric is not None and r.emissions_g is not None]
    if not placed:
        return None
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    for state, marker in (("complete", "o"), ("pruned", "x")):
        rows = [r for r in placed if r.state == state]
        if rows:
            axis.scatter(
                [r.emissions_g for r in rows], [r.metric for r in rows], marker=marker, color="tab:gray", label=state
            )
    front = sorted((r for r in placed if r.number in report.front), key=lambda r: r.emissions_g)
    if front:
        grams, metric = [r.emissions_g for r in front], [r.metric for r in front]
        axis.step(grams, metric, where="post", color="tab:orange", label="Pareto front")
        axis.scatter(grams, metric, color="tab:orange", zorder=3)
    best = next((r for r in placed if r.number == report.best), None)
    if best is not None:
        axis.scatter(
            [best.emissions_g],
            [best.metric],
            marker="*",
            s=250,
            color="tab:red",
            zorder=4,
            label=f"best: trial {best.number}",
        )
    for row in placed:
        axis.annotate(
            str(row.number), (row.emissions_g, row.metric), xytext=(4, 4), textcoords="offset points", fontsize=8
        )
    axis.set_xlabel("g CO2eq per trial")
    axis.set_ylabel(f"validation {report.metric.name}")
    axis.legend(fontsize=8)
    figure.suptitle(f"{report.name}: {report.metric.name} vs CO2 ({report.total_emissions_g:.3g} g in all)")
    figure.tight_layout()
    path = report.folder / PLOT_FILE
    figure.savefig(path)
    plt.close(figure)
    return path
