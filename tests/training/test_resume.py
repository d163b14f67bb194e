"""A run killed with SIGKILL mid-training, then resumed, ends exactly where an uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.builders import REPO, classification_recipe, toy_sentiment_rows, write_jsonl


def start_training(recipe_path, *extra):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "finetune_kit", "train", str(recipe_path), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, process, timeout=180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"training ended before the kill: {process.stderr.read()[-2000:]}")
        time.sleep(0.01)
    pytest.fail("timed out waiting for the run to reach the point of the kill")


def killed_then_resumed(recipe_path, run_dir, step: int) -> None:
    """Train, SIGKILL the process once checkpoint `step` is complete, check that nothing looks finished, resume."""
    process = start_training(recipe_path)
    partial = run_dir.with_name(run_dir.name + ".partial")
    checkpoint = partial / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json"
    # The checkpoint's emissions reading is saved just after it: a kill in between would lose this session's energy.
    wait_for(lambda: checkpoint.is_file() and any(partial.glob("emissions.readings/*.json")), process)
    process.kill()
    process.wait()
    assert not run_dir.exists()
    resumed = start_training(recipe_path, "--resume")
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-2000:]


def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_bert, tmp_path, write_recipe):
    data = {
        "train": write_jsonl(tmp_path / "train.jsonl", toy_sentiment_rows(3000, seed=1)),
        "validation": write_jsonl(tmp_path / "validation.jsonl", toy_sentiment_rows(200, seed=2)),
    }
    settings = {"epochs": 4, "batch_size": 16, "learning_rate": 1e-3, "logging_steps": 20}
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference = write_recipe(classification_recipe(tiny_bert, data, reference_dir, **settings), "reference.yaml")
    killed = write_recipe(classification_recipe(tiny_bert, data, killed_dir, **settings), "killed.yaml")

    process = start_training(killed)
    partial = tmp_path / "killed.partial"
    first_checkpoint = partial / "checkpoints" / "checkpoint-188" / "trainer_state.json"
    # The emissions reading is saved just after the checkpoint: energy after it is lost in a kill.
    wait_for(lambda: first_checkpoint.is_file() and any(partial.glob("emissions.readings/*.json")), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not killed_dir.exists()  # an interrupted run never looks complete
    assert (tmp_path / "killed.partial" / "recipe.yaml").is_file()

    for recipe, extra in ((killed, ("--resume",)), (reference, ())):
        finished = start_training(recipe, *extra)
        _, stderr = finished.communicate(timeout=300)
        assert finished.returncode == 0, stderr[-2000:]

    resumed = json.loads((killed_dir / "metrics.json").read_text())
    uninterrupted = json.loads((reference_dir / "metrics.json").read_text())
    assert resumed["train"]["steps"] == uninterrupted["train"]["steps"] == 752
    assert resumed["validation"]["accuracy"] == uninterrupted["validation"]["accuracy"]
    assert resumed["validation"]["loss"] == pytest.approx(uninterrupted["validation"]["loss"], rel=1e-5)

    log = [json.loads(line) for line in (killed_dir / "log.jsonl").read_text().splitlines()]
    train_steps = [entry["step"] for entry in log if "loss" in entry]
    assert len(train_steps) == len(set(train_steps))  # no step logged twice across the kill
    emissions = json.loads((killed_dir / "emissions.json").read_text())
    assert emissions["sessions"] == 2 and emissions["emissions_g"] > 0


def test_kill_while_the_first_checkpoint_is_written_then_resume_starts_over_and_keeps_the_energy(
    tiny_bert, tmp_path, write_recipe
):
    data = {
        "train": write_jsonl(tmp_path / "train.jsonl", toy_sentiment_rows(3000, seed=1)),
        "validation": write_jsonl(tmp_path / "validation.jsonl", toy_sentiment_rows(200, seed=2)),
    }
    settings = {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "logging_steps": 20}
    recipe = write_recipe(classification_recipe(tiny_bert, data, tmp_path / "run", **settings))
    process = start_training(recipe)
    partial = tmp_path / "run.partial"
    # Readings are saved on a timer (every measure_power_secs), long before the first checkpoint.
    wait_for(lambda: any(partial.glob("emissions.readings/*.json")), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not list(partial.glob("checkpoints/checkpoint-*/trainer_state.json"))
    half_written = partial / "checkpoints" / "checkpoint-188"
    half_written.mkdir(parents=True, exist_ok=True)  # what a kill during the checkpoint's write leaves
    (half_written / "model.safetensors").write_bytes(b"\0" * 64)

    resumed = start_training(recipe, "--resume")
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-2000:]
    assert "starting over" in stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 376  # trained from the start: 2 epochs of 188 steps
    emissions = json.loads((tmp_path / "run" / "emissions.json").read_text())
    assert emissions["sessions"] == 2  # the killed session's energy is counted too
