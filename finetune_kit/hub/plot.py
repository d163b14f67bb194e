"""The training curve as a PNG for the run folder and the model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt


def plot_training_curve(log: list[dict[str, Any]], main_metric: str, path: Path) -> bool:
    """Training loss and the validation main metric against steps; False when there is nothing to draw."""
    train = [(e["step"], e["loss"]) for e in log if "loss" in e]
    evals = [(e["step"], e[f"eval_{main_metric}"]) for e in log if f"eval_{main_metric}" in e]
    if not train and not evals:
        return False
    figure, loss_axis = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        loss_axis.plot(*zip(*train, strict=True), color="tab:blue", label="training loss")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("training loss", color="tab:blue")
    if evals:
        metric_axis = loss_axis.twinx()
        metric_axis.plot(*zip(*evals, strict=True), "o-", color="tab:orange", label=f"validation {main_metric}")
        metric_axis.set_ylabel(f"validation {main_metric}", color="tab:orange")
    figure.suptitle("Training curve")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True
