"""What a sweep found: every trial with its values, metric, grams and state; the front of metric vs
grams CO2eq; the best trial; and the grams of the whole search, pruned and failed trials included.
Written as sweep.json, shown as a table, and stated in the best trial's model card."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from finetune_kit.config.sweep import CO2
from finetune_kit.hub.card import write_model_card
from finetune_kit.inference import read_run
from finetune_kit.runs import Layout, RunFiles, RunFolder
from finetune_kit.sweep.plan import Objective, SweepPlan
from finetune_kit.sweep.study import attempts
from finetune_kit.sweep.trial import SET_VALUES, shown

REPORT_FILE, PLOT_FILE = "sweep.json", "pareto.png"  # in the sweep folder, beside study.db and the trials
FRONT = "●"  # marks a trial of the Pareto front (the best one is marked ★ best)
_UNBOUNDED = 1_000_000  # columns: a table measured at its natural width
STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


@dataclass(frozen=True)
class TrialRow:
    """One set of values: its first attempt's number (its run folder's), as its latest attempt ended."""

    number: int
    state: str
    params: dict[str, Any]  # as set in the trial's recipe: a relative learning rate, not its factor
    metric: float | None  # the final validation metric of the trial's run (pruned runs too)
    emissions_g: float | None  # every attempt's, in its run folder
    run_dir: str | None
    intermediate_values: dict[int, float]
    retries: tuple[int, ...] = ()  # the study's trials that ran these values again after a worker died


@dataclass(frozen=True)
class TrialsView:
    """The trials as one table where it fits the console (a wide terminal); else, as in a log or a
    pipe (80 columns, where rich would cut every value to "learn…"), one block per trial with one
    field a line, every name and value whole."""

    title: str
    parameters: list[str]  # dotted recipe fields
    metric: str
    rows: list[list[str]]  # per trial: number, parameter values, metric, grams, state, mark

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = self._table()
        natural = Measurement.get(console, options.update_width(_UNBOUNDED), table).maximum  # rich caps at the width
        if natural <= options.max_width:
            yield table
            return
        yield Text(self.title)
        labels = [*self.parameters, self.metric, "g CO2eq"]
        width = max(map(len, labels))
        for number, *cells, state, mark in self.rows:
            mark = f"{FRONT} front" if mark == FRONT else mark  # the table's column says what ● is
            yield Text(" · ".join(filter(None, (f"trial {number}", state, mark))))
            for label, cell in zip(labels, cells, strict=True):
                yield Text(f"  {label.ljust(width)}  {cell}", no_wrap=True, overflow="ignore")

    def _table(self) -> Table:
        table = Table(title=self.title, box=box.SIMPLE_HEAD)
        for column in ("trial", *_short(self.parameters), self.metric, "g CO2eq", "state", "front"):
            table.add_column(column, justify="right" if column in {"trial", self.metric, "g CO2eq"} else "left")
        for cells in self.rows:
            table.add_row(*map(Text, cells))  # Text: values are never read as markup
        return table


@dataclass(frozen=True)
class SweepReport:
    name: str
    folder: Path
    storage: str
    objectives: list[Objective]
    metric: Objective
    planned_trials: int
    trials: list[TrialRow]
    front: list[int]  # complete trials that no other beats on both metric and grams
    best: int | None  # the complete trial with the best metric (fewer grams break ties)
    stopped: str | None  # why the sweep ended before its plan

    @property
    def total_emissions_g(self) -> float:
        return sum(row.emissions_g for row in self.trials if row.emissions_g is not None)

    def count(self, state: str) -> int:
        return sum(row.state == state for row in self.trials)

    def row(self, number: int) -> TrialRow:
        return next(row for row in self.trials if row.number == number)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.name,
            "storage": self.storage,
            "objectives": [asdict(objective) for objective in self.objectives],
            "planned_trials": self.planned_trials,
            "trials_by_state": {state: self.count(state) for state in STATES.values() if self.count(state)},
            "total_emissions_g": self.total_emissions_g,
            "stopped": self.stopped,
            "best": asdict(self.row(self.best)) if self.best is not None else None,
            "pareto_front": self.front,
            "trials": [asdict(row) for row in self.trials],
        }

    def table(self) -> TrialsView:
        """One row per trial: its values, metric, grams, state; the front and the best marked."""
        names = list(dict.fromkeys(name for row in self.trials for name in row.params))
        rows = []
        for row in self.trials:
            mark = "★ best" if row.number == self.best else (FRONT if row.number in self.front else "")
            rows.append(
                [
                    str(row.number),
                    *(shown(row.params[name]) if name in row.params else "-" for name in names),
                    f"{row.metric:.4f}" if row.metric is not None else "-",
                    f"{row.emissions_g:.3g}" if row.emissions_g is not None else "-",
                    row.state,
                    mark,
                ]
            )
        title = f"sweep {self.name}: {self.metric.name} vs grams CO2eq"
        return TrialsView(title, names, self.metric.name, rows)

    def summary(self) -> str:
        """What the table does not say: counts, the grams of the whole search, the best trial, the files."""
        finished = self.count("complete") + self.count("pruned")
        counts = ", ".join(f"{self.count(state)} {state}" for state in STATES.values() if self.count(state))
        line = f"{finished} of {self.planned_trials} trials finished ({counts}); the search emitted "
        line += f"{self.total_emissions_g:.3g} g CO2eq"
        if retried := [str(row.number) for row in self.trials if row.retries]:
            line += f"; trial {', '.join(retried)} ran again after its worker died"
        if self.best is not None:
            best = self.row(self.best)
            grams = f", {best.emissions_g:.3g} g" if best.emissions_g is not None else ""
            line += f"; best: trial {best.number} ({self.metric.name} {best.metric:.4f}{grams}) in {best.run_dir}"
        line += f"; stopped: {self.stopped}" if self.stopped else ""
        return f"{line}\nreport: {self.folder / REPORT_FILE}, {self.folder / PLOT_FILE}"


def trial_grams(trial: optuna.trial.FrozenTrial) -> float | None:
    """A finished trial's grams as it recorded them; a failed, killed or running one's from the
    readings its run folder saved on this machine (energy spent counts whether or not the run ended)."""
    if trial.user_attrs.get("emissions_g") is not None:
        return trial.user_attrs["emissions_g"]
    run_dir = trial.user_attrs.get("run_dir")
    if run_dir is None:
        return None
    record = RunFiles(Path(run_dir)).emissions() or RunFolder(Path(run_dir)).total_emissions()
    return record.emissions_g if record else None


def attempt_grams(group: list[optuna.trial.FrozenTrial]) -> float | None:
    """The grams of one set of values: its latest attempt's run folder holds every attempt's readings
    (a retry continues the folder of the attempt whose worker died), unless that attempt measured none."""
    return next((grams for trial in reversed(group) if (grams := trial_grams(trial)) is not None), None)


def summarise(plan: SweepPlan, study: optuna.Study, storage: str, stopped: str | None) -> SweepReport:
    """Each set of values once: a trial whose worker died and the retry that ran its values again are one."""
    rows = [
        TrialRow(
            number,
            STATES[latest.state.name],
            {**latest.params, **latest.user_attrs.get(SET_VALUES, {})},
            latest.user_attrs.get("metric"),
            attempt_grams(group),
            latest.user_attrs.get("run_dir"),
            latest.intermediate_values,
            tuple(trial.number for trial in group[1:]),
        )
        for number, group in attempts(study).items()
        for latest in [group[-1]]
    ]
    complete = [row for row in rows if row.state == "complete" and row.metric is not None]
    sign = 1 if plan.metric.greater_is_better else -1
    best = max(complete, key=lambda r: (sign * r.metric, -_grams_or_inf(r)), default=None)
    return SweepReport(
        plan.name,
        plan.folder,
        storage,
        plan.objectives,
        plan.metric,
        plan.config.trials,
        rows,
        pareto_front(complete, plan.metric.greater_is_better),
        best.number if best else None,
        stopped,
    )


def pareto_front(rows: list[TrialRow], greater_is_better: bool) -> list[int]:
    """Trials no other beats on both counts: as good a metric with no more grams, better on one. With
    `co2` among the objectives this is the study's own Pareto front (`study.best_trials`)."""
    sign = 1 if greater_is_better else -1
    points = [(row.number, sign * row.metric, row.emissions_g) for row in rows if row.emissions_g is not None]
    return [
        number
        for number, metric, grams in points
        if not any(m >= metric and g <= grams and (m > metric or g < grams) for _, m, g in points)
    ]


def write_report(report: SweepReport) -> Path:
    files = RunFiles(report.folder)
    files.write_json(REPORT_FILE, report.to_dict())
    return files.path(REPORT_FILE)


def note_on_best_card(report: SweepReport) -> None:
    """The best trial's card states what the whole search emitted; a trial that was best before a
    resumed sweep found a better one loses that note."""
    for row in report.trials:
        run_dir = Path(row.run_dir) if row.run_dir else None
        if run_dir is None or not (run_dir / Layout.CARD).is_file():
            continue  # unfinished, or on another machine
        files, note = RunFiles(run_dir), run_dir / Layout.SWEEP_NOTE
        if row.number == report.best:
            files.write_json(Layout.SWEEP_NOTE, _best_note(report))
        elif note.is_file():
            note.unlink()
        else:
            continue
        files, recipe, task = read_run(run_dir)
        write_model_card(files, recipe, task)


def _best_note(report: SweepReport) -> dict[str, Any]:
    return {
        "sweep": report.name,
        "trial": report.best,
        "metric": report.metric.name,
        "front": any(objective.name == CO2 for objective in report.objectives),
        "trials": {state: report.count(state) for state in ("complete", "pruned", "failed")},
        "total_emissions_g": report.total_emissions_g,
    }


def _short(names: list[str]) -> list[str]:
    """Column headers: each field's last name (learning_rate), the dotted name where two would share it."""
    last = [name.rsplit(".", 1)[-1] for name in names]
    return [short if last.count(short) == 1 else name for short, name in zip(last, names, strict=True)]


def _grams_or_inf(row: TrialRow) -> float:
    return row.emissions_g if row.emissions_g is not None else math.inf
