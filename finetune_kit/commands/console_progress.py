"""Training and evaluation on the console, as a Trainer callback (the bars and lines are in
`finetune_kit.console`). The train command gives it to the training core, which knows no console."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from finetune_kit.console import (
    EVALUATION_NAMES,
    Bar,
    Metrics,
    evaluation_text,
    get_console,
    interactive,
    say,
    split_evaluation,
    training_stats,
)


class ConsoleProgress(TrainerCallback):
    """Training and evaluation as a person reads them (main process only): on a terminal, a bar for
    training (step/total, loss, learning rate, tokens/s, g CO2eq so far and projected for the run) and
    one per evaluation; otherwise one plain line per logging step; either way one line per evaluation.

    It replaces Trainer's tqdm bar and printed dicts (`disable_tqdm=True`, PrinterCallback removed)
    and comes after Throughput among the callbacks: it shows the tokens/s Throughput adds to the logs.
    """

    def __init__(self, emissions_so_far: Callable[[], float | None], console: Console | None = None) -> None:
        self.emissions_so_far = emissions_so_far
        self.console = console or get_console()
        self._training = False
        self._train_bar: Bar | None = None
        self._evaluation_bar: Bar | None = None
        self._start: tuple[float, int] | None = None  # grams and step when training began

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._training = True
        grams = self.emissions_so_far()
        self._start = (grams, state.global_step) if grams is not None else None
        if self._shows(state) and interactive(self.console):
            self._train_bar = Bar(self.console, "train", state.max_steps, completed=state.global_step)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self._train_bar is not None:
            self._train_bar.update(completed=state.global_step)

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Metrics = None, **kw: Any
    ) -> None:
        if not (self._shows(state) and logs and "loss" in logs):
            return  # evaluations get their line from on_evaluate; the end of training, the CLI's summary
        grams = self.emissions_so_far()
        stats = " · ".join(training_stats(logs, grams, _projected(grams, state, self._start)))
        if self._train_bar is not None:
            self._train_bar.update(info=stats)
        else:
            steps = f"step {state.global_step:,}/{state.max_steps:,} · epoch {state.epoch or 0:.2f}"
            say(self.console, f"{steps} · {stats}")

    def on_prediction_step(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        eval_dataloader: Any = None,
        **kw: Any,
    ) -> None:
        if not (self._shows(state) and interactive(self.console)):
            return
        if self._evaluation_bar is None:
            self._evaluation_bar = Bar(self.console, "evaluate", _length(eval_dataloader))
        self._evaluation_bar.update(advance=1)

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics: Metrics = None, **kw: Any
    ) -> None:
        self._evaluated(args, state, metrics or {})

    def on_predict(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics: Metrics = None, **kw: Any
    ) -> None:
        self._evaluated(args, state, metrics or {})

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._training = False
        if self._train_bar is not None:
            self._train_bar.close()
            self._train_bar = None

    def _shows(self, state: TrainerState) -> bool:
        return state.is_world_process_zero and not self.console.quiet

    def _evaluated(self, args: TrainingArguments, state: TrainerState, metrics: dict[str, Any]) -> None:
        if self._evaluation_bar is not None:
            self._evaluation_bar.close()
            self._evaluation_bar = None
        if not self._shows(state):
            return
        name, values = split_evaluation(metrics)
        when = f" · step {state.global_step:,} · epoch {state.epoch or 0:.2f}" if self._training else ""
        main = (args.metric_for_best_model or "").removeprefix("eval_")
        say(self.console, f"{EVALUATION_NAMES.get(name, name)}{when}: {evaluation_text(values, main)}")


def _projected(grams: float | None, state: TrainerState, start: tuple[float, int] | None) -> float | None:
    """The run's grams by the end of training at this pace: what was spent before training (loading,
    evaluating and generating before it, earlier sessions of a resumed run) plus the steps' grams
    so far scaled to all the steps."""
    if grams is None or not state.max_steps:
        return None
    start_grams, start_step = start or (0.0, 0)
    if state.global_step <= start_step:
        return None
    return start_grams + (grams - start_grams) * (state.max_steps - start_step) / (state.global_step - start_step)


def _length(loader: Any) -> int | None:
    """Batches in an evaluation, when the loader knows (an iterable dataset does not)."""
    try:
        return len(loader)
    except TypeError:
        return None
