"""Trainer callbacks of the toolkit's own: JSON-lines log, throughput, emissions, stop on request."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Protocol

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from finetune_kit.costs.finish import FinishCost
from finetune_kit.emissions import EmissionsBudget, EmissionsRecord, RunTracker, sum_records


class JsonLinesLog(TrainerCallback):
    """Every Trainer log event (loss, lr, eval metrics, speed) as one JSON line, main process only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kw):
        if state.is_world_process_zero and logs:
            self.write({"step": state.global_step, "epoch": state.epoch, **logs})

    def write(self, entry: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"time": round(time.time(), 3), **entry}) + "\n")


class Throughput(TrainerCallback):
    """Adds samples/s and real (non-padding) tokens/s since the previous log to each training log.
    A sample is one of the user's examples: a packed row of `examples_per_row` counts as that many."""

    def __init__(self) -> None:
        self._last: tuple[float, int, float] | None = None
        self.tokens_at_start = 0  # a resumed run's state counts the tokens of earlier sessions too
        self.examples_per_row = 1.0

    def on_train_begin(self, args, state: TrainerState, control, **kw):
        self.tokens_at_start = state.num_input_tokens_seen or 0
        self._last = (time.perf_counter(), state.global_step, self.tokens_at_start)

    def on_log(self, args: TrainingArguments, state: TrainerState, control, logs=None, **kw):
        if self._last is None or logs is None or "loss" not in logs:
            return
        now, tokens = time.perf_counter(), state.num_input_tokens_seen or 0
        then, step, tokens_then = self._last
        elapsed = max(now - then, 1e-9)
        samples = (state.global_step - step) * args.train_batch_size * args.gradient_accumulation_steps
        samples *= args.world_size * self.examples_per_row
        logs["samples_per_second"] = round(samples / elapsed, 2)
        logs["tokens_per_second"] = round((tokens - tokens_then) / elapsed, 1)
        self._last = (now, state.global_step, tokens)


class Readings(Protocol):
    """Where a process's emissions readings go (`ranks.EmissionReadings`)."""

    def save(self, reading: EmissionsRecord) -> None: ...

    def share(self, reading: EmissionsRecord | None) -> None: ...


class EmissionsCallback(TrainerCallback):
    """Tracks CO2 from the opening of a run to its end (`start` / `stop`), in every process. Each process saves
    its reading every `save_every_s` seconds, and shares it at each checkpoint and at the end (`readings`: on
    another machine than the run folder's, only sharing reaches the folder), so a killed run, once resumed
    (or started over), still counts the energy spent up to its last reading, and the processes of a
    distributed run add up.

    With a budget, the spending is checked at every step, counting what the run will still spend (`finish`: one
    more step, then one last evaluation and save, the final evaluations, generation and saved model): training
    stops at the first step where that would pass the budget, so a stopped run ends close to it, keeping the best
    checkpoint so far. All processes agree on the spending (summed across them) and so stop at the same step.
    """

    def __init__(
        self,
        tracker: RunTracker,
        readings: Readings,
        budget: EmissionsBudget | None = None,
        earlier: EmissionsRecord | None = None,
        save_every_s: float = 15.0,
        finish: FinishCost | None = None,
    ) -> None:
        self.tracker = tracker
        self.readings = readings
        self.budget = budget
        self.earlier = earlier  # sessions before a resume count against the budget too
        self.save_every_s = save_every_s
        self.finish = finish
        self.latest: EmissionsRecord | None = None  # this session, all processes
        self.stopped: dict | None = None
        self._last_saved = 0.0

    def spent(self) -> EmissionsRecord | None:
        """Emissions so far, earlier sessions included, as of the latest logging step."""
        spent = [r for r in (self.earlier, self.latest) if r is not None]
        return sum_records(spent) if spent else None

    def spent_g(self) -> float | None:
        """Grams CO2eq so far, earlier sessions included, as of the latest logging step."""
        spent = self.spent()
        return spent.emissions_g if spent else None

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kw):
        """Grams CO2eq and kWh so far on each training log: the JSON log and every tracker record them. It runs
        after `on_step_end` has read the tracker at this logging step, and before the callbacks that write logs."""
        spent = self.spent()
        if logs is not None and "loss" in logs and spent is not None:
            logs["emissions_g"] = spent.emissions_g
            logs["energy_kwh"] = spent.energy_kwh

    def start(self) -> None:
        """Called when the run opens, so evaluations before and after training count too."""
        self.tracker.start()
        self._last_saved = time.monotonic()

    def stop(self, *, together: bool = True) -> None:
        """Called once the run's last evaluation and generation are done, by every process at once (`together`);
        after a failure in this process alone, `together=False` saves its reading without waiting for the others."""
        reading = self.tracker.stop()
        if together:
            self.readings.share(reading)
        elif reading is not None:
            self.readings.save(reading)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        """A reading as training starts: what loading and the evaluations before it spent, for the projection."""
        reading = self.tracker.read()
        if reading is not None:
            grams, kwh = _summed_across_processes(args, reading.emissions_g, reading.energy_kwh)
            self.latest = replace(reading, emissions_g=grams, energy_kwh=kwh)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        if time.monotonic() - self._last_saved >= self.save_every_s:
            self._save()
        if state.global_step % args.logging_steps and self.budget is None:
            return  # read at logging steps, or at every step (a fresh codecarbon reading is cheap) with a budget
        reading = self.tracker.read()
        if reading is None:
            return
        checking = self.budget is not None and not self.stopped
        reserve = self.finish.reserve(reading, args, state, control) if checking and self.finish else (0.0, 0.0)
        grams, kwh, reserve_g, reserve_kwh = _summed_across_processes(
            args, reading.emissions_g, reading.energy_kwh, *reserve
        )
        self.latest = replace(reading, emissions_g=grams, energy_kwh=kwh)
        spent = sum_records([self.earlier, self.latest]) if self.earlier else self.latest
        projected = replace(spent, emissions_g=spent.emissions_g + reserve_g, energy_kwh=spent.energy_kwh + reserve_kwh)
        exceeded = self.budget.exceeded(projected) if checking else None
        if exceeded:
            self.stopped = {
                "limit": exceeded,
                "step": state.global_step,
                "emissions_g": projected.emissions_g,  # what reached the limit: spent, plus the end still to come
                "spent_g": spent.emissions_g,
            }
            control.should_training_stop = True
            # One last evaluation and save: here for step strategies; epoch ones come with the epoch's end.
            control.should_evaluate = control.should_evaluate or args.eval_strategy == "steps"
            control.should_save = control.should_save or args.save_strategy == "steps"

    def on_save(self, args, state: TrainerState, control, **kw):
        """Every process saves at the same step: the other machines' readings reach the run folder."""
        self.readings.share(self.tracker.read())
        self._last_saved = time.monotonic()

    def _save(self) -> None:
        reading = self.tracker.read()
        if reading is not None:
            self.readings.save(reading)
        self._last_saved = time.monotonic()


def _summed_across_processes(args: TrainingArguments, *values: float) -> tuple[float, ...]:
    if args.world_size == 1 or not torch.distributed.is_initialized():
        return values
    totals = torch.tensor(values, dtype=torch.float64, device=args.device)
    torch.distributed.all_reduce(totals)
    return tuple(float(total) for total in totals)


class RunStopped(KeyboardInterrupt):
    """Training stopped on request (SIGTERM) with a checkpoint kept: the run folder stays partial for `--resume`.
    An interrupt the process was asked for, so no `except Exception` swallows it, and what handles Ctrl-C around a
    run (a sweep's "continue with --resume") handles it too."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped at step {step}")
        self.step = step


class StopOnRequest(TrainerCallback):
    """A stop asked for (`request`) ends training at the end of the current step with a checkpoint saved, so
    `--resume` continues where it stopped: given to `train` among its `extra_callbacks`, which then keeps the
    run folder stopped and raises `RunStopped`. The process's entry point decides what asks: `listening` makes
    it SIGTERM (the studio's Stop, a scheduler taking the machine back), a second one killing at once."""

    def __init__(self) -> None:
        self.requested = False
        self.step: int | None = None  # the step training stopped at, once it did

    @contextmanager
    def listening(self) -> Iterator[None]:
        """SIGTERM asks for the stop while inside. Only in a run of one process, on the main thread (where Python
        runs signal handlers): the ranks of a distributed run could not agree on the step to stop at."""
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # set by torchrun and accelerate launch
        if distributed or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, self._request)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _request(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the next one ends the process as SIGTERM always did

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        if self.requested and state.global_step < state.max_steps:  # the last step: the run just finishes
            self.step = state.global_step
            control.should_save = True
            control.should_training_stop = True

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        """The Trainer ends the epoch of a stopped run too, where an epoch strategy asks for an evaluation and a
        save: the stop's checkpoint is saved already, and an evaluation mid-epoch would enter the log and the best
        metric as no uninterrupted run's would. Runs after the Trainer's own flow callback."""
        if self.step is not None:
            control.should_evaluate = False
            control.should_save = False
