"""Runs launched through the studio's API as real `finetune-kit` processes: one trained to the end; one stopped
(SIGTERM) at a step with its checkpoint kept, then continued through the API, both sessions' energy
counted; and a job whose end the studio cannot read, which ends all the same."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from finetune_kit.runs.folder import Layout
from finetune_kit.studio import StudioSettings
from finetune_kit.studio.launcher import EXPORT, Job, Jobs
from tests.builders import REPO, classification_recipe, toy_sentiment_rows, write_jsonl
from tests.studio.clients import studio_client


@pytest.fixture
def studio(tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[TestClient, Path]:
    """A studio over a recipe of a tiny local model (`0/toy.yaml`); jobs inherit the test's environment."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    data = {
        "train": write_jsonl(tmp_path / "data" / "train.jsonl", toy_sentiment_rows(800, seed=1)),
        "validation": write_jsonl(tmp_path / "data" / "validation.jsonl", toy_sentiment_rows(40, seed=2)),
    }
    recipe = classification_recipe(tiny_bert, data, Path("runs/toy"), epochs=1, logging_steps=2)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "toy.yaml").write_text(yaml.safe_dump(recipe))
    runs = tmp_path / "runs"
    return studio_client(StudioSettings.create([runs], [tmp_path / "recipes"])), runs


def wait_for(condition: Callable[[], object], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def finished_job(client: TestClient, job: dict) -> dict:
    wait_for(lambda: client.get(f"/api/jobs/{job['id']}").json()["status"] != "running")
    return client.get(f"/api/jobs/{job['id']}").json()


def test_a_run_estimated_then_launched_from_the_form_trains_to_the_end_in_the_runs_folder(studio) -> None:
    client, runs = studio
    overrides = {"name": "ignored", "output_dir": "anywhere/launched", "training.max_steps": "30"}
    estimate = finished_job(
        client, client.post("/api/recipes/0/toy.yaml/estimate", json={"overrides": overrides}).json()
    )
    assert estimate["status"] == "done" and estimate["result"]["co2_g"] > 0, estimate["output_tail"]
    assert not (runs / "launched").exists() and not (runs / "launched.partial").exists()  # an estimate writes no run

    started = client.post("/api/recipes/0/toy.yaml/train", json={"overrides": overrides})
    assert started.status_code == 202
    job = started.json()
    assert job["kind"] == "train" and job["status"] == "running" and job["run_id"] == "0/launched"
    again = client.post("/api/recipes/0/toy.yaml/train", json={"overrides": overrides})
    assert again.status_code in (409, 422)  # the job is running, or it already made its folder

    job = finished_job(client, job)

    assert job["status"] == "done" and job["returncode"] == 0, job["output_tail"]
    metrics = json.loads((runs / "launched" / Layout.METRICS).read_text())
    assert metrics["train"]["steps"] == 30
    log = (runs / ".studio" / "jobs" / f"{job['id']}.log").read_text()
    assert log.startswith("$ finetune-kit train ") and "--set training.max_steps=30" in log
    assert [run["id"] for run in client.get("/api/jobs").json()["jobs"]] == [job["id"], estimate["id"]]
    assert client.get("/api/runs/0/launched").json()["estimate"] == estimate["result"]  # the run page shows it


def test_stop_through_the_api_keeps_a_checkpoint_says_the_resume_command_and_resume_through_the_api_finishes(
    studio,
) -> None:
    client, runs = studio
    job = client.post("/api/recipes/0/toy.yaml/train", json={"overrides": {"training.epochs": "2"}}).json()
    partial = runs / "toy.partial"
    wait_for(lambda: (partial / Layout.LOG).is_file())  # a step logged: training is under way

    assert client.post("/api/runs/0/toy/stop").json()["id"] == job["id"]
    job = finished_job(client, job)

    assert job["status"] == "stopped" and job["returncode"] == 130, job["output_tail"]
    stopped = json.loads((partial / Layout.STOPPED).read_text())
    assert 2 <= stopped["step"] < 200 and stopped["time"] > 0
    assert (partial / Layout.CHECKPOINTS / f"checkpoint-{stopped['step']}" / "trainer_state.json").is_file()
    assert list((partial / Layout.EMISSION_READINGS).glob("*.json"))  # this session's energy is on disk
    assert not (partial / Layout.METRICS).exists() and not (runs / "toy").exists()
    assert client.post("/api/runs/0/toy/stop").status_code == 409  # nothing left to stop
    summary = next(run for run in client.get("/api/runs").json()["runs"] if run["id"] == "0/toy")
    assert summary["status"] == "stopped"

    line = next(line for line in job["output_tail"].splitlines() if line.startswith("stopped at step"))
    said, command = line.split("; continue with: ")
    assert said == f"stopped at step {stopped['step']}"
    program, *arguments = shlex.split(command)  # for a terminal, with the job's `--set` options (not run here)
    assert program == "finetune-kit" and arguments[-1] == "--resume" and "training.epochs=2" in arguments
    assert client.post("/api/runs/0/elsewhere/resume").status_code == 404

    resumed = finished_job(client, client.post("/api/runs/0/toy/resume").json())  # the page's Resume button
    assert resumed["status"] == "done", resumed["output_tail"]
    assert not partial.exists() and not (runs / "toy" / Layout.STOPPED).exists()
    assert json.loads((runs / "toy" / Layout.METRICS).read_text())["train"]["steps"] == 200
    assert json.loads((runs / "toy" / Layout.EMISSIONS).read_text())["sessions"] == 2
    assert client.post("/api/runs/0/toy/resume").status_code == 409  # finished: nothing to resume


def test_a_job_whose_result_cannot_be_kept_still_ends_failed_saying_why(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    registry = Jobs(tmp_path)

    def unexpected(job: Job) -> None:
        raise RuntimeError("the result could not be kept")

    job = registry._start(EXPORT, ["--help"], "0/x", None, unexpected)  # a quick command that succeeds
    wait_for(lambda: job.ended is not None, timeout=60)

    assert job.process.returncode == 0 and job.status == "failed"
    assert job.to_dict()["output_tail"].endswith("studio: the result could not be kept")
    assert registry.running(EXPORT, "0/x") is None  # the run is free again
