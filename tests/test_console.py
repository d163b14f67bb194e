"""The console a person reads: bars on a terminal, plain lines in a log, silence with --quiet, a summary
that says why training ended, and no third-party noise unless asked for."""

import io
import itertools
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
from rich.console import Console
from transformers import PrinterCallback, Trainer, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging as transformers_logging

from finetune_kit import console
from finetune_kit.commands.console_progress import ConsoleProgress
from finetune_kit.console import configure_output, get_console, phase, run_summary
from finetune_kit.emissions import EmissionsRecord
from finetune_kit.training.callbacks import Throughput
from tests.builders import REPO, classification_recipe

BAR_FRAGMENTS = ("\r", "━", "it/s", "\x1b")


def plain_console() -> Console:
    """As in CI or `> log`: not a terminal."""
    return Console(file=io.StringIO(), width=100)


def terminal_console() -> Console:
    return Console(file=io.StringIO(), width=160, force_terminal=True)


def output(of: Console) -> str:
    return of.file.getvalue()


def state(step: int, max_steps: int = 20, main: bool = True) -> TrainerState:
    return TrainerState(global_step=step, max_steps=max_steps, epoch=step / 10, is_world_process_zero=main)


ARGS = SimpleNamespace(metric_for_best_model="accuracy")
EVAL_METRICS = {
    "eval_loss": 0.38231,
    "eval_f1_macro": 0.84129,
    "eval_accuracy": np.float32(0.845),
    "eval_runtime": 2.13,
    "eval_samples_per_second": 410.2,
    "eval_steps_per_second": 12.9,
    "epoch": 1.0,
}


def train_logs(step: int) -> dict:
    return {"loss": 0.5 / step, "grad_norm": 1.3, "learning_rate": 4.5e-05, "tokens_per_second": 12345.6}


def simulate_training(progress: ConsoleProgress) -> None:
    """The events Trainer sends in 20 steps, logging every 5, evaluating at step 10."""
    control = TrainerControl()
    progress.on_train_begin(ARGS, state(0), control)
    for step in range(1, 21):
        progress.on_step_end(ARGS, state(step), control)
        if step % 5 == 0:
            progress.on_log(ARGS, state(step), control, logs=train_logs(step))
        if step == 10:
            for _ in range(3):
                progress.on_prediction_step(ARGS, state(step), control, eval_dataloader=[1, 2, 3])
            progress.on_log(ARGS, state(step), control, logs=dict(EVAL_METRICS))
            progress.on_evaluate(ARGS, state(step), control, metrics=dict(EVAL_METRICS))
    progress.on_log(ARGS, state(20), control, logs={"train_runtime": 9.1, "train_loss": 0.2})
    progress.on_train_end(ARGS, state(20), control)


@pytest.mark.unit
def test_without_a_terminal_each_logging_step_is_one_plain_line():
    out = plain_console()
    readings = itertools.chain([0.0], itertools.repeat(0.01234))  # nothing spent before training
    simulate_training(ConsoleProgress(lambda: next(readings), console=out))
    lines = output(out).splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    assert steps[0] == (
        "step 5/20 · epoch 0.50 · loss 0.1000 · lr 4.50e-05 · 12,346 tokens/s · 0.0123 g CO2eq so far → ~0.0494 g"
    )
    assert len(steps) == 4
    assert lines[2] == "validation · step 10 · epoch 1.00: accuracy 0.8450 · loss 0.3823 · f1_macro 0.8413 · 2.1 s"
    assert len(lines) == 5  # nothing else: no raw dicts, no bar
    assert not any(fragment in output(out) for fragment in BAR_FRAGMENTS)


@pytest.mark.unit
def test_without_emissions_the_line_has_no_co2():
    out = plain_console()
    simulate_training(ConsoleProgress(lambda: None, console=out))
    assert "CO2" not in output(out) and "step 20/20" in output(out)


@pytest.mark.unit
def test_quiet_and_other_processes_print_nothing():
    quiet = Console(file=io.StringIO(), quiet=True)
    simulate_training(ConsoleProgress(lambda: 1.0, console=quiet))
    with phase("tokenize", 10, console=quiet):
        pass
    assert output(quiet) == ""

    out = plain_console()
    progress = ConsoleProgress(lambda: 1.0, console=out)
    progress.on_log(ARGS, state(5, main=False), TrainerControl(), logs=train_logs(5))
    progress.on_evaluate(ARGS, state(5, main=False), TrainerControl(), metrics=dict(EVAL_METRICS))
    assert output(out) == ""


@pytest.mark.unit
def test_evaluations_outside_training_are_named_by_their_prefix():
    out = plain_console()
    progress = ConsoleProgress(lambda: None, console=out)
    before = {"before_loss": 0.69, "before_accuracy": 0.5, "before_runtime": 0.4}
    progress.on_evaluate(ARGS, state(0), TrainerControl(), metrics=before)
    many = {f"test_f1_{i}": 0.5 for i in range(8)} | {"test_accuracy": 0.9, "test_runtime": 75.0}
    progress.on_predict(ARGS, state(20), TrainerControl(), metrics=many)
    first, second = output(out).splitlines()
    assert first == "before training: accuracy 0.5000 · loss 0.6900 · 0.4 s"
    assert second.startswith("test: accuracy 0.9000 · f1_0 0.5000") and second.endswith("+3 more · 1 min 15 s")


@pytest.mark.unit
def test_on_a_terminal_training_and_evaluation_draw_bars_and_stop_them():
    out = terminal_console()
    progress = ConsoleProgress(lambda: 0.5, console=out)
    control = TrainerControl()
    progress.on_train_begin(ARGS, state(0), control)
    progress.on_prediction_step(ARGS, state(0), control, eval_dataloader=[1, 2, 3])
    progress.on_step_end(ARGS, state(5), control)
    progress.on_log(ARGS, state(5), control, logs=train_logs(5))
    console._live[out].refresh()
    drawn = output(out)
    assert "train" in drawn and " 5/20" in drawn and "evaluate" in drawn and "1/3" in drawn
    assert "loss 0.1000 · lr 4.50e-05 · 12,346 tokens/s · 0.5 g CO2eq" in drawn
    progress.on_evaluate(ARGS, state(5), control, metrics=dict(EVAL_METRICS))
    progress.on_train_end(ARGS, state(20), control)
    assert "validation · step 5 · epoch 0.50: accuracy 0.8450" in output(out)
    assert not console._live  # no display left running: the cursor is back


@pytest.mark.unit
def test_phase_without_a_terminal_is_one_line_when_done():
    out = plain_console()
    with phase("tokenize", total=4000, console=out):
        pass
    with phase("generate", total=3, unit="samples", console=out):
        pass
    first, second = output(out).splitlines()
    assert first.startswith("tokenize: 4,000 rows … done in ") and first.endswith(" s")
    assert second.startswith("generate: 3 samples … done in ")
    assert not any(fragment in output(out) for fragment in BAR_FRAGMENTS)


@pytest.mark.unit
def test_phase_on_a_terminal_shares_the_display_with_training():
    out = terminal_console()
    progress = ConsoleProgress(lambda: None, console=out)
    progress.on_train_begin(ARGS, state(0), TrainerControl())
    with phase("generate", total=2, unit="samples", console=out):
        pass  # inside training: rich allows one live display, so the bars share it
    progress.on_train_end(ARGS, state(20), TrainerControl())
    assert "generate: 2 samples … done in" in output(out)
    assert not console._live


@pytest.mark.unit
def test_a_failed_phase_prints_no_done_line():
    out = plain_console()
    with pytest.raises(ValueError), phase("tokenize", 10, console=out):
        raise ValueError("bad row")
    assert output(out) == ""


def summary_text(metrics: dict, emissions: EmissionsRecord | None = None) -> str:
    out = Console(file=io.StringIO(), width=200)
    out.print(run_summary(metrics, emissions, Path("runs/sst2-demo"), 83.4))
    return "\n".join(" ".join(line.split()) for line in output(out).splitlines())  # spacing aside


METRICS = {
    "main_metric": "accuracy",
    "validation": {"accuracy": 0.84523, "loss": 0.4},
    "test": {"accuracy": 0.8391},
    "before_training": {"accuracy": 0.5011},
    "train": {"samples_per_second": 143.24, "tokens_per_second": 5432.1, "mfu": 0.1234},
    "model": {"parameters": 22713218, "trainable_parameters": 1538, "trainable_percent": 0.007},
}
EMISSIONS = EmissionsRecord(0.51234, 0.0012345, 80.0, "Xeon", "", "France", "FRA", None, 2, 0, "3.0")


@pytest.mark.unit
def test_summary_table_reports_scores_speed_size_co2_and_folder():
    text = summary_text(METRICS, EMISSIONS)
    assert "done" in text and "stopped" not in text
    assert "validation accuracy: 0.8452 (before training 0.5011)" in text
    assert "test accuracy: 0.8391" in text
    assert "143.2 samples/s · 5,432 tokens/s · MFU 12.3%" in text
    assert "parameters: 22,713,218 · trainable 1,538 (0.007%)" in text
    assert "0.512 g CO2eq · 0.00123 kWh" in text and "France" in text
    assert "wall time: 1 min 23 s" in text
    packed = summary_text({**METRICS, "train": {"samples_per_second": 9.5, "sample_unit": "conversations"}}, None)
    assert "9.5 conversations/s" in packed
    assert text.rstrip().endswith("run folder: runs/sst2-demo")


@pytest.mark.unit
def test_summary_says_why_training_ended_early():
    metrics = {
        **METRICS,
        "stopped_on_budget": {"limit": "max_co2_g 0.03 g", "step": 50, "emissions_g": 0.035},
        "stopped_early": {"reason": "early stopping: no improvement of accuracy in 3 evaluations", "step": 120},
    }
    text = summary_text(metrics)
    assert "done, stopped early" in text
    assert "stopped: emissions budget max_co2_g 0.03 g reached at step 50 (0.035 g CO2eq)" in text
    assert "stopped: early stopping: no improvement of accuracy in 3 evaluations, at step 120" in text
    assert "CO2:" not in text  # emissions off


@pytest.mark.unit
def test_configure_output_hides_library_noise_unless_verbose(monkeypatch):
    noise = ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY", "HF_DATASETS_DISABLE_PROGRESS_BARS")
    for variable in (*noise, "RANK"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(console, "_console", get_console())  # put back after the test
    configure_output(verbose=False, quiet=False)
    assert [os.environ[variable] for variable in noise] == ["error", "error", "1"]  # for later imports
    assert transformers_logging.get_verbosity() == logging.ERROR  # and libraries imported already
    assert not transformers_logging.is_progress_bar_enabled() and not datasets.is_progress_bar_enabled()
    assert not get_console().quiet
    configure_output(verbose=False, quiet=True)
    assert get_console().quiet
    configure_output(verbose=True, quiet=False)
    assert not any(variable in os.environ for variable in noise)
    monkeypatch.setenv("RANK", "1")
    configure_output(verbose=True, quiet=False)
    assert get_console().quiet  # only the main process of a distributed run speaks


def test_a_script_that_quiets_the_libraries_first_prints_nothing_when_importing_them():
    """What a bench script does. bitsandbytes (imported by peft) logs a warning on import on a CPU with
    AVX512-BF16; the same warning is logged here too, so the check holds on any machine."""
    script = (
        "from finetune_kit.quiet import quiet_libraries\n"
        "quiet_libraries()\n"
        "import logging, peft, transformers\n"
        "logging.getLogger('bitsandbytes.backends.cpu.ops').warning('Failed to load CPU gemm_4bit_forward')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith(("VERBOSITY", "PROGRESS_BARS"))}
    done = subprocess.run([sys.executable, "-c", script], env={**env, "PYTHONPATH": str(REPO)}, capture_output=True)
    assert done.returncode == 0 and done.stdout + done.stderr == b"", done.stderr.decode()[-2000:]


@pytest.mark.unit
def test_verbose_and_quiet_together_is_a_one_line_error(cli):
    result = cli("--verbose", "--quiet", "emissions", "runs/none")
    assert result.exit_code == 2 and result.error_lines == ["error: --verbose and --quiet: choose one"]


class _Line(torch.nn.Module):
    """y = w·x + b: the smallest model Trainer can train and evaluate."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        prediction = self.linear(x).squeeze(-1)
        return {"loss": torch.nn.functional.mse_loss(prediction, labels), "logits": prediction}


def test_with_a_real_trainer_printer_callback_removed_no_raw_dict_is_printed(tmp_path, capsys):
    rows = [{"x": [i / 10], "labels": 2 * i / 10} for i in range(40)]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=20,
        per_device_train_batch_size=4,
        logging_steps=5,
        eval_strategy="steps",
        eval_steps=10,
        save_strategy="no",
        disable_tqdm=True,
        report_to="none",
        use_cpu=True,
    )
    out = plain_console()
    progress = ConsoleProgress(lambda: 0.001, console=out)
    trainer = Trainer(
        model=_Line(), args=args, train_dataset=rows, eval_dataset=rows, callbacks=[Throughput(), progress]
    )
    trainer.remove_callback(PrinterCallback)
    capsys.readouterr()
    trainer.train()
    printed = capsys.readouterr()
    assert "{'" not in printed.out + printed.err
    lines = output(out).splitlines()
    assert sum(line.startswith("step ") and "tokens/s · 0.001 g CO2eq" in line for line in lines) == 4
    assert sum(line.startswith("validation · step ") for line in lines) == 2


def test_train_without_a_tty_shows_plain_progress_and_no_library_noise(tiny_bert, toy_data, tmp_path, write_recipe):
    """The real command with stdout and stderr piped, as in CI: needs ConsoleProgress wired into the train command."""
    recipe = write_recipe(classification_recipe(tiny_bert, toy_data, tmp_path / "run", epochs=2))
    env = {k: v for k, v in os.environ.items() if not k.endswith(("VERBOSITY", "PROGRESS_BARS"))}
    command = Path(sys.executable).with_name("finetune-kit")
    done = subprocess.run([command, "train", recipe], env=env, capture_output=True, text=True, timeout=600)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-3000:]
    for noise in (*BAR_FRAGMENTS, "LOAD REPORT", "Generating train split", "Map", "{'loss'", "{'eval_loss'"):
        assert noise not in printed, noise
    lines = done.stdout.splitlines()
    assert lines[0].startswith("finetune-kit classification")
    steps = [line for line in lines if line.startswith("step ")]
    assert len(steps) == 2 * 50 // 5  # 400 rows in batches of 8, 2 epochs, a line every 5 steps
    assert all(" · loss " in line and " · lr " in line and "tokens/s" in line and "g CO2eq" in line for line in steps)
    assert sum(line.startswith("validation · step ") for line in lines) == 2
    assert "validation accuracy:" in done.stdout and "run folder:" in done.stdout


def test_quiet_train_prints_only_the_summary(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    """Needs ConsoleProgress wired into the runner and Trainer's PrinterCallback removed."""
    recipe = write_recipe(classification_recipe(tiny_bert, toy_data, tmp_path / "run", epochs=1))
    result = cli("train", recipe, "--quiet")  # also accepted after the command
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("done") and "validation accuracy:" in result.stdout
    assert not any(word in result.stdout for word in ("finetune-kit classification", "step ", "tokenize", "{'"))
    assert "LOAD REPORT" not in result.stderr
