"""The stop on request, step by step: SIGTERM asks, the step's end saves and stops, the next SIGTERM kills; the
epoch's end then neither evaluates nor saves again. A real stop and resume runs through the studio
(tests/studio/test_launch_jobs.py)."""

from __future__ import annotations

import signal

import pytest
from transformers import DefaultFlowCallback, TrainerControl, TrainerState, TrainingArguments

from finetune_kit.training.callbacks import StopOnRequest

pytestmark = pytest.mark.unit


def test_a_stop_request_saves_and_stops_at_the_step_end_and_the_next_sigterm_kills(tmp_path) -> None:
    stop, control = StopOnRequest(), TrainerControl()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    before = signal.getsignal(signal.SIGTERM)
    with stop.listening():
        assert signal.getsignal(signal.SIGTERM) == stop._request
        stop.on_step_end(args, TrainerState(global_step=3, max_steps=10), control)
        assert not control.should_training_stop  # nothing asked yet
        stop._request(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        stop.on_step_end(args, TrainerState(global_step=4, max_steps=10), control)
    assert control.should_save and control.should_training_stop and stop.step == 4
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_stop_asked_during_the_last_step_lets_the_run_finish(tmp_path) -> None:
    stop, control = StopOnRequest(), TrainerControl()
    stop.requested = True
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    stop.on_step_end(args, TrainerState(global_step=10, max_steps=10), control)
    assert stop.step is None and not control.should_training_stop


@pytest.mark.parametrize("stopped", [True, False])
def test_the_epoch_end_of_a_stopped_run_neither_evaluates_nor_saves_again(tmp_path, stopped) -> None:
    """Under `eval_strategy: epoch` the Trainer ends the epoch after the stop: its flow callback asks for an
    evaluation and a save, which the stop (after it in the callback list) takes back; a run not stopped keeps
    them."""
    stop, control = StopOnRequest(), TrainerControl()
    stop.requested = stopped
    args = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", eval_strategy="epoch", save_strategy="epoch"
    )
    state = TrainerState(global_step=4, max_steps=10, epoch=0.4)
    stop.on_step_end(args, state, control)
    assert control.should_save == stopped
    control.should_save = False  # the Trainer saved the step's checkpoint
    for callback in (DefaultFlowCallback(), stop):  # in the Trainer's order: its own callbacks first
        callback.on_epoch_end(args, state, control)
    assert control.should_evaluate == control.should_save == (not stopped)
