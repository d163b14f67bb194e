"""Trainer callbacks of the toolkit's own: JSON-lines log, throughput, emissions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

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
    """Adds samples/s and real (non-padding) tokens/s since the previous log to each training log."""

    def __init__(self) -> None:
        self._last: tuple[float, int, float] | None = None
        self.tokens_at_start = 0  # a resumed run's state counts the tokens of earlier sessions too

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
        samples *= args.world_size
        logs["samples_per_second"] = round(samples / elapsed, 2)
        logs["tokens_per_second"] = round((tokens - tokens_then) / elapsed, 1)
        self._last = (now, state.global_step, tokens)


class EmissionsCallback(TrainerCallback):
    """Tracks CO2 from the opening of a run to its end (`start` / `stop`), in every process. Each process saves
    its reading every `save_every_s` seconds and at each checkpoint, so a killed run, once resumed
    (or started over), still counts the energy spent up to its last reading, and the processes of a
    distributed run add up.

    With a budget, training stops at the first check past it, after one last evaluation and save,
    so the best checkpoint so far is what the run keeps. Checks fall on logging steps, where all
    processes agree on the spending (summed across them) and so stop at the same step.
    """

    def __init__(
        self,
        tracker: RunTracker,
        save_reading: Callable[[EmissionsRecord], None],
        budget: EmissionsBudget | None = None,
        earlier: EmissionsRecord | None = None,
        save_every_s: float = 15.0,
    ) -> None:
        self.tracker = tracker
        self.save_reading = save_reading
        self.budget = budget
        self.earlier = earlier  # sessions before a resume count against the budget too
        self.save_every_s = save_every_s
        self.latest: EmissionsRecord | None = None  # this session, all processes
        self.stopped: dict | None = None
        self._last_saved = 0.0

    def spent_g(self) -> float | None:
        """Grams CO2eq so far, earlier sessions included, as of the latest logging step."""
        spent = [r for r in (self.earlier, self.latest) if r is not None]
        return sum_records(spent).emissions_g if spent else None

    def start(self) -> None:
        """Called when the run opens, so evaluations before and after training count too."""
        self.tracker.start()
        self._last_saved = time.monotonic()

    def stop(self) -> None:
        """Called once the run's last evaluation and generation are done."""
        final = self.tracker.stop()
        if final is not None:
            self.save_reading(final)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw):
        if time.monotonic() - self._last_saved >= self.save_every_s:
            self._save()
        if state.global_step % args.logging_steps:
            return
        reading = self.tracker.read()
        if reading is None:
            return
        grams, kwh = _summed_across_processes(args, reading.emissions_g, reading.energy_kwh)
        self.latest = replace(reading, emissions_g=grams, energy_kwh=kwh)
        spent = sum_records([self.earlier, self.latest]) if self.earlier else self.latest
        exceeded = self.budget.exceeded(spent) if self.budget and not self.stopped else None
        if exceeded:
            self.stopped = {"limit": exceeded, "step": state.global_step, "emissions_g": spent.emissions_g}
            control.should_training_stop = True
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = args.save_strategy != "no"

    def on_save(self, args, state: TrainerState, control, **kw):
        self._save()

    def _save(self) -> None:
        reading = self.tracker.read()
        if reading is not None:
            self.save_reading(reading)
        self._last_saved = time.monotonic()


def _summed_across_processes(args: TrainingArguments, grams: float, kwh: float) -> tuple[float, float]:
    if args.world_size == 1 or not torch.distributed.is_initialized():
        return grams, kwh
    totals = torch.tensor([grams, kwh], dtype=torch.float64, device=args.device)
    torch.distributed.all_reduce(totals)
    return float(totals[0]), float(totals[1])
