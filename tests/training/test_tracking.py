"""Experiment tracking (`training.report_to`): TensorBoard, MLflow and trackio each hold, in the run folder, the
loss and the grams CO2eq so far at every logging step and the run's final emissions, read back with each
tracker's own reader; the progress line shows grams so far and the projected total."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import TrainerControl, TrainerState

from finetune_kit.commands.console_progress import ConsoleProgress
from tests.builders import classification_recipe

FINETUNE_KIT = Path(sys.executable).with_name("finetune-kit")
TRACKIO = Path(sys.executable).with_name("trackio")
LOGGING_STEPS = [5, 10, 15, 20]  # 80 rows in batches of 8, 2 epochs, a log every 5 steps
RUN_ENVIRONMENT = ("MLFLOW_TRACKING_URI", "TENSORBOARD_LOGGING_DIR", "TRACKIO_DIR")


def small_recipe(tiny_bert: Path, toy_data: dict[str, Path], run_dir: Path, name: str, **training) -> dict:
    recipe = classification_recipe(tiny_bert, toy_data, run_dir, epochs=2, **training)
    recipe["name"] = name
    recipe["data"] |= {"max_train_rows": 80, "max_eval_rows": 40}
    return recipe


def emissions_g(run_dir: Path) -> float:
    return json.loads((run_dir / "emissions.json").read_text())["emissions_g"]


def assert_running_grams(steps: list[int], grams: list[float]) -> None:
    assert steps == LOGGING_STEPS
    assert all(value > 0 for value in grams) and grams == sorted(grams)  # energy only adds up


def tensorboard_scalars(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir / "tracking" / "tensorboard"))
    events.Reload()
    return events


def mlflow_run(tracking_uri: str, name: str) -> tuple[MlflowClient, Run]:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)  # one experiment per run, named after it
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


def trackio_metric(trackio_dir: Path, project: str, metric: str) -> dict[int, float]:
    """A metric by training step: trackio numbers its own logs, and the Trainer's step is a metric of each."""
    values = {}
    for name in (metric, "train/global_step"):
        done = subprocess.run(
            [TRACKIO, "get", "metric", "--project", project, "--run", project, "--metric", name, "--json"],
            env={**os.environ, "TRACKIO_DIR": str(trackio_dir)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        values[name] = {entry["step"]: entry["value"] for entry in json.loads(done.stdout)["values"]}
    steps = values["train/global_step"]
    return {int(steps[log]): value for log, value in values[metric].items()}


def test_each_tracker_holds_loss_and_grams_at_every_logging_step_and_the_final_emissions(
    tiny_bert, toy_data, tmp_path, write_recipe
):
    """The real command, in a process of its own as a user runs it (trackio reads TRACKIO_DIR when imported)."""
    run_dir, work = tmp_path / "runs" / "tracked", tmp_path / "work"
    work.mkdir()
    recipe = small_recipe(tiny_bert, toy_data, run_dir, "tracked", report_to=["tensorboard", "mlflow", "trackio"])
    environment = {k: v for k, v in os.environ.items() if k not in RUN_ENVIRONMENT}
    done = subprocess.run(
        [FINETUNE_KIT, "train", write_recipe(recipe)], cwd=work, env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert not list(work.iterdir())  # nothing in the working directory: no ./mlruns, ./mlflow.db, ./runs
    assert sorted(path.name for path in (run_dir / "tracking").iterdir()) == ["mlflow.db", "tensorboard", "trackio"]
    total = emissions_g(run_dir)

    steps = [line for line in done.stdout.splitlines() if line.startswith("step ")]
    assert len(steps) == len(LOGGING_STEPS) and all(" g CO2eq so far → ~" in line for line in steps)
    assert f"tensorboard --logdir {run_dir / 'tracking' / 'tensorboard'}" in done.stdout  # where to look

    events = tensorboard_scalars(run_dir)
    assert [event.step for event in events.Scalars("train/loss")] == LOGGING_STEPS
    grams = events.Scalars("train/emissions_g")
    assert_running_grams([event.step for event in grams], [event.value for event in grams])
    assert [event.step for event in events.Scalars("train/energy_kwh")] == LOGGING_STEPS
    (final,) = events.Scalars("train/final_emissions_g")
    assert final.step == 20 and final.value == pytest.approx(total, rel=1e-5) and final.value >= grams[-1].value
    assert events.Scalars("test/accuracy")  # the evaluations after training reach the tracker too

    client, run = mlflow_run(f"sqlite:///{run_dir / 'tracking' / 'mlflow.db'}", "tracked")
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == LOGGING_STEPS
    grams = client.get_metric_history(run.info.run_id, "emissions_g")
    assert_running_grams([m.step for m in grams], [m.value for m in grams])
    assert run.data.metrics["final_emissions_g"] == pytest.approx(total, rel=1e-9)
    assert run.data.metrics["final_energy_kwh"] > 0 and run.data.metrics["final_duration_s"] > 0
    assert "test_accuracy" in run.data.metrics and run.data.params["learning_rate"] == "0.003"

    trackio_dir = run_dir / "tracking" / "trackio"
    assert list(trackio_metric(trackio_dir, "tracked", "train/loss")) == LOGGING_STEPS
    grams = trackio_metric(trackio_dir, "tracked", "train/emissions_g")
    assert_running_grams(list(grams), list(grams.values()))
    assert trackio_metric(trackio_dir, "tracked", "train/final_emissions_g") == {20: pytest.approx(total, rel=1e-9)}

    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [entry["emissions_g"] for entry in log if "loss" in entry] == list(grams.values())


def test_runs_in_one_process_each_log_to_their_own_store_and_leave_the_environment_as_it_was(
    tiny_bert, toy_data, tmp_path, write_recipe, cli, monkeypatch
):
    for variable in RUN_ENVIRONMENT:
        monkeypatch.delenv(variable, raising=False)
    first, second = tmp_path / "runs" / "first", tmp_path / "runs" / "second"
    recipe = small_recipe(tiny_bert, toy_data, first, "first", report_to=["tensorboard", "mlflow"])
    assert cli("train", write_recipe(recipe, "first.yaml")).exit_code == 0
    shared = f"sqlite:///{tmp_path / 'shared.db'}"  # a store of the user's, named in the recipe
    recipe = small_recipe(tiny_bert, toy_data, second, "second", report_to="mlflow", tracking_uri=shared)
    result = cli("train", write_recipe(recipe, "second.yaml"))
    assert result.exit_code == 0, result.stderr

    assert not any(variable in os.environ for variable in RUN_ENVIRONMENT) and not mlflow.is_tracking_uri_set()
    assert not (second / "tracking").exists()
    client, run = mlflow_run(shared, "second")
    assert run.data.metrics["final_emissions_g"] == pytest.approx(emissions_g(second), rel=1e-9)
    assert client.get_experiment_by_name("first") is None
    client, run = mlflow_run(f"sqlite:///{first / 'tracking' / 'mlflow.db'}", "first")
    assert client.get_experiment_by_name("second") is None
    assert run.info.status == "FINISHED" and len(client.get_metric_history(run.info.run_id, "loss")) == 4
    assert tensorboard_scalars(first).Scalars("train/final_emissions_g")[0].value == pytest.approx(emissions_g(first))


GUARD_SCRIPT = """
import os, sys
os.environ["TRACKIO_DIR"] = sys.argv[1]
import trackio  # as in a notebook that logged to trackio before
del os.environ["TRACKIO_DIR"]
from finetune_kit.cli import main
sys.argv = ["finetune-kit", "train", sys.argv[2]]
main()
"""


def test_trackio_already_writing_elsewhere_in_this_process_is_refused_before_anything_is_written(
    tiny_bert, toy_data, tmp_path, write_recipe
):
    run_dir = tmp_path / "runs" / "late"
    recipe = write_recipe(small_recipe(tiny_bert, toy_data, run_dir, "late", report_to=["trackio"]))
    elsewhere = tmp_path / "notebook-trackio"
    command = [sys.executable, "-c", GUARD_SCRIPT, str(elsewhere), str(recipe)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: training.report_to: trackio already writes to {elsewhere} in this process" in done.stderr
    assert not run_dir.exists() and not run_dir.with_name("late.partial").exists()


@pytest.mark.unit
def test_an_unknown_tracker_is_a_one_line_error_with_a_did_you_mean(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "typo"
    recipe = write_recipe(small_recipe(tiny_bert, toy_data, run_dir, "typo"))
    result = cli("train", recipe, "--set", "training.report_to=[mlflow, tensorbord]")
    assert result.exit_code == 2
    assert result.error_lines == [
        f"error: {recipe}: training.report_to: unknown tracker 'tensorbord'; did you mean 'tensorboard'?"
    ]
    assert not run_dir.exists() and not run_dir.with_name("typo.partial").exists()


@pytest.mark.unit
def test_the_progress_line_shows_grams_so_far_and_the_projected_total():
    out = Console(file=io.StringIO(), width=200)
    grams = iter([0.4, 1.2, 2.8])  # at training's start (loading, evaluating before it), steps 10 and 30
    progress = ConsoleProgress(lambda: next(grams), console=out)
    start = TrainerState(global_step=0, max_steps=40, is_world_process_zero=True)
    progress.on_train_begin(None, start, TrainerControl())
    logs = {"loss": 0.5, "learning_rate": 1e-4, "tokens_per_second": 1000.0}
    for step in (10, 30):
        state = TrainerState(global_step=step, max_steps=40, epoch=step / 20, is_world_process_zero=True)
        progress.on_log(None, state, TrainerControl(), logs=logs)
    first, second = out.file.getvalue().splitlines()
    # What was spent before training, plus the steps' grams scaled to all 40 steps: 0.4 + 0.8 x 4
    assert first.endswith("1,000 tokens/s · 1.2 g CO2eq so far → ~3.6 g")
    assert second.endswith("2.8 g CO2eq so far → ~3.6 g")
