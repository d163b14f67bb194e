"""Trainer callbacks of the toolkit's own: JSON-lines log, throughput, emissions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from finetune_kit.emissions import EmissionsBudget, EmissionsRecord, RunTracker, sum_records

BUDGET_CHECK_SECONDS = 1.0  # reading codecarbon every step would cost more than it tells


class JsonLinesLog(TrainerCallback):
    """Every Trainer log event (loss, lr, eval metrics, speed) as one JSON line, main process only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kw):
        if state.is_world_process_zero and logs:
            entry = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3), **logs}
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")


class Throughput(TrainerCallback):
    """Adds samples/s and real (non-padding) tokens/s since the previous log to each training log."""

    def __init__(self) -> None:
        self._last: tuple[float, int, float] | None = None

    def on_train_begin(self, args, state: TrainerState, control, **kw):
        self._last = (time.perf_counter(), state.global_step, state.num_input_tokens_seen or 0)

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
    """Tracks CO2 from the first to the last training step; a reading is saved at each checkpoint so
    that a killed run, once resumed, still accounts for the energy spent before the kill.

    With a budget, training stops at the first step past it, after one last evaluation and save,
    so the best checkpoint so far is what the run keeps.
    """

    def __init__(
        self,
        tracker: RunTracker,
        save_reading: Callable[[EmissionsRecord], None],
        budget: EmissionsBudget | None = None,
        earlier: EmissionsRecord | None = None,
    ) -> None:
        self.tracker = tracker
        self.save_reading = save_reading
        self.budget = budget
        self.earlier = earlier  # sessions before a resume count against the budget too
        self.final: EmissionsRecord | None = None
        self.stopped: dict | None = None
        self._next_check = 0.0

    def on_train_begin(self, args, state, control, **kw):
        self.tracker.start()

    def on_step_end(self, args, state: TrainerState, control: TrainerControl, **kw):
        if self.budget is None or self.stopped or time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + BUDGET_CHECK_SECONDS
        reading = self.tracker.read()
        if reading is None:
            return
        spent = sum_records([self.earlier, reading]) if self.earlier else reading
        exceeded = self.budget.exceeded(spent)
        if exceeded:
            self.stopped = {"limit": exceeded, "step": state.global_step, "emissions_g": spent.emissions_g}
            control.should_training_stop = True
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = args.save_strategy != "no"

    def on_save(self, args, state: TrainerState, control, **kw):
        reading = self.tracker.read()
        if reading is not None and state.is_world_process_zero:
            self.save_reading(reading)

    def on_train_end(self, args, state: TrainerState, control, **kw):
        self.final = self.tracker.stop()
        if self.final is not None and state.is_world_process_zero:
            self.save_reading(self.final)
