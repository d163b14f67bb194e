"""What a person sees while finetune-kit works: one bar per phase (tokenize, train, evaluate, generate),
one line per evaluation and a summary table. Without a terminal (CI, `> log`) bars become plain lines;
with --quiet only the summary and errors remain; the libraries' own chatter shows only with --verbose.
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from rich.console import Console, Group, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from finetune_kit.quiet import quiet_libraries

if TYPE_CHECKING:
    from finetune_kit.emissions import EmissionsRecord

_SPEED_METRICS = ("runtime", "samples_per_second", "steps_per_second", "model_preparation_time")
_SHOWN_METRICS = 6  # per evaluation line; the rest are in log.jsonl and metrics.json
EVALUATION_NAMES = {"eval": "validation", "before": "before training"}
Metrics = dict[str, Any] | None

_console = Console(soft_wrap=True)  # long paths stay on one line, copyable


def get_console() -> Console:
    """The console for progress and status lines, silent with --quiet and in all processes but the main one."""
    return _console


def configure_output(verbose: bool, quiet: bool) -> None:
    """How much this process shows. Call it before anything runs: with --verbose, libraries imported
    earlier stay as quiet as an earlier call made them."""
    global _console
    _console = Console(soft_wrap=True, quiet=quiet or not _is_main_process())
    quiet_libraries(verbose)


def _is_main_process() -> bool:
    """torchrun and accelerate launch number their processes in RANK; a lone process has none."""
    return os.environ.get("RANK", "0") == "0"


def interactive(console: Console) -> bool:
    """Bars only where they redraw in place; a file or a dumb terminal gets plain lines."""
    return console.is_terminal and not console.is_dumb_terminal


# -- bars ---------------------------------------------------------------------------------------------

_live: WeakKeyDictionary[Console, Progress] = WeakKeyDictionary()


class Bar:
    """One bar on its console's live display. The bars of a console share one rich Progress, since
    rich shows one live display per console: the first bar starts it, the last one stops it."""

    def __init__(self, console: Console, description: str, total: int | None, completed: int = 0) -> None:
        if console not in _live:
            _live[console] = _new_progress(console)
        self._progress = _live[console]
        self._task: TaskID = self._progress.add_task(description, total=total, completed=completed, info="")

    def update(self, **changes: Any) -> None:
        self._progress.update(self._task, **changes)

    def close(self) -> None:
        self._progress.remove_task(self._task)
        if not self._progress.tasks:
            self._progress.stop()
            _live.pop(self._progress.console, None)


def _new_progress(console: Console) -> Progress:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,  # a finished phase leaves its one summary line, not a frozen bar
    )
    progress.start()
    return progress


def stop_bars() -> None:
    """Stop every live bar (a run interrupted or failed): what is printed next lands below them and the
    terminal gets its cursor back."""
    for progress in list(_live.values()):
        progress.stop()
    _live.clear()


@contextmanager
def phase(
    description: str, total: int | None = None, *, unit: str = "rows", console: Console | None = None
) -> Iterator[None]:
    """A step the user waits for (tokenize, generate) that reports no progress of its own: a pulsing
    bar on a terminal, then one line either way, `tokenize: 4,000 rows … done in 1.2 s`; nothing with
    --quiet."""
    console = console or get_console()
    started = time.perf_counter()
    bar = Bar(console, description, None) if interactive(console) and not console.quiet else None
    try:
        yield
    finally:
        if bar is not None:
            bar.close()
    what = f"{description}: {total:,} {unit}" if total else description
    say(console, f"{what} … done in {duration_text(time.perf_counter() - started)}")


def say(console: Console, line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


class ConsoleReport:
    """`finetune_kit.progress.Progress` on the console: phases as bars and lines, notes as lines. Without a console
    of its own it uses the one `configure_output` set, as of each call."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console

    def phase(self, description: str, total: int | None = None, *, unit: str = "rows") -> AbstractContextManager[None]:
        return phase(description, total, unit=unit, console=self.console)

    def note(self, line: str) -> None:
        say(self.console or get_console(), line)


def training_stats(logs: dict[str, Any], grams: float | None, projected_grams: float | None = None) -> list[str]:
    """Loss (and GRPO's mean reward), learning rate, tokens/s, grams CO2eq so far and, when known, the
    run's projected total."""
    stats = [f"loss {logs['loss']:.4f}"]
    if "reward" in logs:
        stats.append(f"reward {logs['reward']:.3f}")
    if "learning_rate" in logs:
        stats.append(f"lr {logs['learning_rate']:.2e}")
    if "tokens_per_second" in logs:
        stats.append(f"{logs['tokens_per_second']:,.0f} tokens/s")
    if grams is not None:
        projection = f" → ~{grams_text(projected_grams)} g" if projected_grams is not None else ""
        stats.append(f"{grams_text(grams)} g CO2eq so far{projection}")
    return stats


def split_evaluation(metrics: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Trainer prefixes every metric of an evaluation with its name (`eval_`, `test_`, ...); speed
    metrics always come with it, so `<name>_runtime` tells the name."""
    name = next((key.removesuffix("_runtime") for key in metrics if key.endswith("_runtime")), "eval")
    prefix = f"{name}_"
    return name, {key.removeprefix(prefix): value for key, value in metrics.items() if key.startswith(prefix)}


def evaluation_text(values: dict[str, Any], main_metric: str) -> str:
    """The main metric first, then the loss, then the others, rounded; speed reduced to the runtime."""
    scores = {key: value for key, value in values.items() if _is_number(value) and key not in _SPEED_METRICS}
    order = sorted(scores, key=lambda key: (key != main_metric, key != "loss"))
    parts = [f"{key} {_number(scores[key])}" for key in order[:_SHOWN_METRICS]]
    if len(order) > _SHOWN_METRICS:
        parts.append(f"+{len(order) - _SHOWN_METRICS} more")
    if "runtime" in values:
        parts.append(duration_text(values["runtime"]))
    return " · ".join(parts)


def _is_number(value: Any) -> bool:
    """Python and numpy numbers alike (compute_metrics often returns numpy scalars); not flags."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value: float) -> str:
    """Scores and losses to 4 decimals; large values (perplexity, lengths) with fewer digits."""
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4f}"


def grams_text(grams: float) -> str:
    return f"{grams:,.0f}" if grams >= 100 else f"{grams:.3g}"


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# -- the summary --------------------------------------------------------------------------------------


def run_summary(
    metrics: dict[str, Any], emissions: EmissionsRecord | None, run_dir: Path, wall_seconds: float
) -> RenderableType:
    """What `train` ends with: scores, why training ended early, speed, size, CO2, time, folder."""
    ended_early = "stopped_on_budget" in metrics or "stopped_early" in metrics
    title = "[bold yellow]done, stopped early[/]" if ended_early else "[bold green]done[/]"
    table = Table(box=None, show_header=False, title=title, title_justify="left", pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        *_score_rows(metrics),
        *_stop_rows(metrics),
        *_speed_rows(metrics.get("train", {})),
        *_sampling_rows(metrics),
        *_parameter_rows(metrics.get("model", {})),
        *_emission_rows(emissions),
        ("wall time:", duration_text(wall_seconds)),
    ]
    for label, value in rows:
        table.add_row(label, value)
    return Group(table, Text(f"run folder: {run_dir}"))


def parameters_text(counts: dict[str, Any]) -> str:
    """`22,713,218 · trainable 1,538 (0.007%)`: how much of the model the run trains."""
    total, trainable, percent = counts["parameters"], counts["trainable_parameters"], counts["trainable_percent"]
    return f"{total:,} · trainable {trainable:,} ({percent}%)"


def _score_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    main = metrics["main_metric"]
    rows = []
    for split in ("validation", "test"):
        value = metrics.get(split, {}).get(main)
        if value is None:
            continue
        text = _number(value)
        before = metrics.get("before_training", {}).get(main) if split == "validation" else None
        if before is not None:
            text += f" (before training {_number(before)})"
        rows.append((f"{split} {main}:", text))
    before = metrics.get("before_training", {}).get("generation", {})
    for metric, value in metrics.get("generation", {}).items():  # scores of replies generated for test prompts
        was = f" (before training {_number(before[metric])})" if metric in before else ""
        rows.append((f"generated {metric}:", _number(value) + was))
    rewards = metrics.get("rewards", {})  # GRPO: each reward's mean over training, first and last logged
    if rewards:
        curves = (f"{name} {_number(r['first'])} → {_number(r['last'])}" for name, r in rewards.items())
        rows.append(("rewards:", " · ".join(curves)))
    if "emissions_g_per_point" in metrics:
        rows.append(("CO2 per point:", f"{grams_text(metrics['emissions_g_per_point'])} g CO2eq per +0.01 {main}"))
    return rows


def _stop_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if budget := metrics.get("stopped_on_budget"):
        rows.append(
            (
                "stopped:",
                f"emissions budget {budget['limit']} reached at step {budget['step']:,}"
                f" ({grams_text(budget['emissions_g'])} g CO2eq)",
            )
        )
    if early := metrics.get("stopped_early"):
        rows.append(("stopped:", f"{early['reason']}, at step {early['step']:,}"))
    return rows


def _speed_rows(train: dict[str, Any]) -> list[tuple[str, str]]:
    if "samples_per_second" not in train:
        return []
    speed = f"{train['samples_per_second']:,.1f} {train.get('sample_unit', 'samples')}/s"
    if "tokens_per_second" in train:
        speed += f" · {train['tokens_per_second']:,.0f} tokens/s"
    if "mfu" in train:
        speed += f" · MFU {100 * train['mfu']:.3g}%"  # 0.0412% on a tiny model, 12.3% on a big one
    return [("speed:", speed)]


def _sampling_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """GRPO: how fast the policy sampled its replies, beside the training speed above."""
    sampling = metrics.get("sampling")
    return [("sampling:", f"{sampling['tokens_per_second']:,.0f} generated tokens/s")] if sampling else []


def _parameter_rows(model: dict[str, Any]) -> list[tuple[str, str]]:
    return [("parameters:", parameters_text(model))] if "parameters" in model else []


def _emission_rows(emissions: EmissionsRecord | None) -> list[tuple[str, str]]:
    if emissions is None:
        return []
    return [
        ("CO2:", f"{grams_text(emissions.emissions_g)} g CO2eq · {emissions.energy_kwh:.3g} kWh"),
        ("where:", emissions.location),
    ]
